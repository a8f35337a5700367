// Package cli is the latch command line: browse and edit the namespace,
// run a command under a lock or an election, watch for changes, look at the
// cell, and benchmark it. cmd/latch's main only sets up signals and calls
// Main; every command lives here, so tests run them in-process.
//
// docs/cli.md documents every command, the output formats and the exit
// codes (see the Exit constants).
package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/tlsfiles"
)

// DefaultEndpoints are the client addresses of `latchd dev`'s cell.
const DefaultEndpoints = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

// EnvEndpoints names the environment variable read when --endpoints is not
// given.
const EnvEndpoints = "LATCH_ENDPOINTS"

// EnvCACert, EnvCert and EnvKey name the variables read when --cacert,
// --cert and --key are not given.
const (
	EnvCACert = "LATCH_CACERT"
	EnvCert   = "LATCH_CERT"
	EnvKey    = "LATCH_KEY"
)

// EnvSequencer names the variable that carries the lock's sequencer to the
// command run by `latch lock` and `latch elect`.
const EnvSequencer = "LATCH_SEQUENCER"

// Env is the outside world of one run of the CLI.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads an environment variable (os.Getenv).
	Getenv func(string) string
	// Environ is the environment passed on to commands run by lock and
	// elect (os.Environ()).
	Environ []string
	// IsTerminal reports whether Stderr is a terminal (progress lines).
	IsTerminal bool
}

// OSEnv returns the process's Env.
func OSEnv() Env {
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil {
		tty = fi.Mode()&os.ModeCharDevice != 0
	}
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv: os.Getenv, Environ: os.Environ(), IsTerminal: tty,
	}
}

// globals are the flags every command has.
type globals struct {
	env            Env
	endpoints      string
	output         string
	commandTimeout time.Duration
	stale          bool
	name           string
	sessionTimeout time.Duration
	grace          time.Duration

	cacert, cert, key string      // the TLS flags
	tls               *tls.Config // from them, set before a command runs; nil: plain TCP
}

// Main runs the CLI with args (without the program name) and returns the
// exit code. ctx ends on SIGINT/SIGTERM: long-running commands (watch,
// lock, elect, bench) stop cleanly then. An error is printed on stderr as
// one line, "latch: ...".
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	root := Command(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var x *exitError
	if errors.As(err, &x) && x.err == nil {
		return x.code // the status of a command run under a lock
	}
	fmt.Fprintf(env.Stderr, "latch: %s\n", oneLine(err))
	return ExitCode(err)
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// Command returns the root command.
func Command(env Env) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:   "latch",
		Short: "latch is the command line of the latch lock and naming service",
		Long: `latch talks to a latch cell: browse and edit its namespace, take locks
around commands, run elections, watch for changes, and look at the cell.

The cell's replicas are named by --endpoints or $LATCH_ENDPOINTS (default:
the cell of "latchd dev", 127.0.0.1:7101,7102,7103). Every command prints
for humans by default and JSON with -o json. See docs/cli.md for the exit
codes.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "text" && g.output != "json" {
				return usagef("-o %q: want text or json", g.output)
			}
			if g.commandTimeout <= 0 {
				return usagef("--command-timeout %v must be positive", g.commandTimeout)
			}
			if cmd.Flags().Changed("endpoints") && strings.Trim(g.endpoints, ", ") == "" {
				// Falling back to $LATCH_ENDPOINTS or the dev cell would
				// send `latch --endpoints "$UNSET" ...` to another cell.
				return usagef("--endpoints %q names no address (leave the flag out for $%s or the dev cell)", g.endpoints, EnvEndpoints)
			}
			var err error
			g.tls, err = g.tlsConfig()
			return err
		},
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetIn(env.Stdin)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoints, "endpoints", "", "comma-separated client addresses of the cell's replicas (default $LATCH_ENDPOINTS, else "+DefaultEndpoints+")")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&g.commandTimeout, "command-timeout", 10*time.Second, "bound on connecting and on each non-blocking call")
	pf.BoolVar(&g.stale, "stale", false, "let reads be answered by any replica from its own state (may lag the leader)")
	pf.DurationVar(&g.sessionTimeout, "session-timeout", 0, "session lease to ask the cell for (0: the cell's default, 12s)")
	pf.DurationVar(&g.grace, "grace", 0, "how long a session that lost touch with the cell keeps trying before its locks count as lost (0: 45s)")
	pf.StringVar(&g.name, "name", "", "name of this client's session, shown by latch sessions (default latch-cli/COMMAND on HOST)")
	pf.StringVar(&g.cacert, "cacert", "", "connect over TLS, verifying the replicas' certificates with the CAs in this PEM file (default $"+EnvCACert+")")
	pf.StringVar(&g.cert, "cert", "", "connect over TLS with this PEM client certificate (default $"+EnvCert+"); needs --key")
	pf.StringVar(&g.key, "key", "", "the PEM private key of --cert (default $"+EnvKey+")")

	root.AddCommand(
		lsCommand(g), treeCommand(g), getCommand(g), statCommand(g), putCommand(g), rmCommand(g), txnCommand(g), aclCommand(g), whoamiCommand(g),
		lockCommand(g), locksCommand(g), sessionsCommand(g), watchCommand(g), electCommand(g),
		membersCommand(g), statusCommand(g), benchCommand(g),
	)
	// cobra's completion command only has subcommands, one per shell: left
	// as it is, a missing or unknown shell prints its help and exits 0.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Args = cobra.ArbitraryArgs
		comp.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("completion: want a shell: bash, zsh, fish or powershell")
			}
			return usagef("completion: unknown shell %q: want bash, zsh, fish or powershell", args[0])
		}
	}
	return root
}

// endpointList returns the endpoints from the flag, the environment or the
// default.
func (g *globals) endpointList() ([]string, error) {
	s := g.endpoints
	if s == "" {
		s = g.env.Getenv(EnvEndpoints)
	}
	if s == "" {
		s = DefaultEndpoints
	}
	var out []string
	for _, e := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, usagef("no endpoints")
	}
	return out, nil
}

// tlsConfig returns the TLS config of --cacert, --cert and --key (each
// else its variable): nil if none is set, else TLS that verifies the
// replicas with the CAs of --cacert (the system's roots without it) and
// presents --cert. A bad file is a usage error naming the flag.
func (g *globals) tlsConfig() (*tls.Config, error) {
	type setting struct{ path, name string }
	get := func(flag, v, env string) setting {
		if v != "" {
			return setting{v, "--" + flag}
		}
		return setting{g.env.Getenv(env), "$" + env}
	}
	ca, cert, key := get("cacert", g.cacert, EnvCACert), get("cert", g.cert, EnvCert), get("key", g.key, EnvKey)
	if ca.path == "" && cert.path == "" && key.path == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cert.path != "" && key.path == "":
		return nil, usagef("%s needs --key (or $%s), its private key", cert.name, EnvKey)
	case key.path != "" && cert.path == "":
		return nil, usagef("%s needs --cert (or $%s), its certificate", key.name, EnvCert)
	case cert.path != "":
		pair, err := tlsfiles.KeyPair(cert.path, key.path, time.Now())
		if err != nil {
			name := cert.name
			if fe, ok := errors.AsType[*tlsfiles.Error](err); ok && fe.Which == tlsfiles.Key {
				name = key.name
			}
			return nil, usagef("%s: %v", name, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if ca.path != "" {
		pool, err := tlsfiles.Pool(ca.path)
		if err != nil {
			return nil, usagef("%s: %v", ca.name, err)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// clientConfig is the client.Config of this run's sessions.
func (g *globals) clientConfig(cmd *cobra.Command) (client.Config, error) {
	eps, err := g.endpointList()
	if err != nil {
		return client.Config{}, err
	}
	if err := (client.Config{Endpoints: eps}).Validate(); err != nil {
		return client.Config{}, usageErr(fmt.Errorf("--endpoints: %w", err))
	}
	cfg := client.DefaultConfig(eps...)
	switch {
	case g.sessionTimeout < 0:
		return client.Config{}, usagef("--session-timeout %v must not be negative", g.sessionTimeout)
	case g.grace < 0:
		return client.Config{}, usagef("--grace %v must not be negative", g.grace)
	case g.grace > 0 && g.grace <= cfg.BackoffMax:
		return client.Config{}, usagef("--grace %v must be longer than %v, the longest pause between the client's reconnect attempts", g.grace, cfg.BackoffMax)
	}
	cfg.Name = g.name
	cfg.TLS = g.tls
	cfg.SessionTimeout, cfg.Grace = g.sessionTimeout, g.grace
	if g.sessionTimeout > 0 && cfg.DialTimeout >= g.sessionTimeout {
		// One hung dial must not use up a whole lease.
		cfg.DialTimeout = g.sessionTimeout / 2
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("latch-cli/%s on %s", cmd.Name(), host)
	}
	if err := cfg.Validate(); err != nil {
		// The endpoints, --grace and the signs are checked above: what
		// is left is a --session-timeout too short for a dial.
		return client.Config{}, usageErr(fmt.Errorf("--session-timeout %v: %w", g.sessionTimeout, err))
	}
	return cfg, nil
}

// dial connects to the cell, bounded by --command-timeout: with a session,
// or without one (look) for commands that only read, which then cost the
// cell no log writes and, with --stale, work while it has no leader.
func (g *globals) dial(cmd *cobra.Command, look bool) (*client.Client, error) {
	cfg, err := g.clientConfig(cmd)
	if err != nil {
		return nil, err
	}
	cfg.NoSession = look
	ctx, cancel := context.WithTimeout(cmd.Context(), g.commandTimeout)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrUnavailable) {
			// Opening a session needs a leader: name the cause.
			err = fmt.Errorf("%w (no leader or no reachable replica within --command-timeout %v): %w", client.ErrUnavailable, g.commandTimeout, err)
		}
		return nil, fmt.Errorf("connecting to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return c, nil
}

// call returns a context for one non-blocking call.
func (g *globals) call(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.commandTimeout)
}

// readOpts are the options of a read: Stale with --stale.
func (g *globals) readOpts() []client.Option {
	if g.stale {
		return []client.Option{client.Stale()}
	}
	return nil
}

func (g *globals) json() bool { return g.output == "json" }

// printJSON writes v as one line of JSON on stdout.
func (g *globals) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = g.env.Stdout.Write(b)
	return err
}

// do dials, runs fn with a context bounded by --command-timeout, and
// closes the session: the shape of every command that makes one call.
func (g *globals) do(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	return g.connected(cmd, false, func(c *client.Client) error {
		ctx, cancel := g.call(cmd)
		defer cancel()
		return fn(ctx, c)
	})
}

// look is do without a session, for commands that only read.
func (g *globals) look(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	return g.connected(cmd, true, func(c *client.Client) error {
		ctx, cancel := g.call(cmd)
		defer cancel()
		return fn(ctx, c)
	})
}

// optPath returns the optional PATH argument, or "/".
func optPath(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return "/"
}

// ifGen returns the IfGeneration option if --if-gen was given.
func ifGen(cmd *cobra.Command, gen uint64) ([]client.Option, error) {
	if !cmd.Flags().Changed("if-gen") {
		return nil, nil
	}
	if gen == 0 {
		return nil, usagef("--if-gen must be at least 1 (a node's content generation starts at 1)")
	}
	return []client.Option{client.IfGeneration(gen)}, nil
}

// withClient opens a session, runs fn, and closes the session.
func (g *globals) withClient(cmd *cobra.Command, fn func(c *client.Client) error) error {
	return g.connected(cmd, false, fn)
}

// connected dials (with a session unless look), runs fn, and closes.
func (g *globals) connected(cmd *cobra.Command, look bool, fn func(c *client.Client) error) error {
	c, err := g.dial(cmd, look)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}
