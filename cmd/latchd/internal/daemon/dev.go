package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/cmd/internal/devcerts"
	"github.com/latchd/latch/cmd/latchd/internal/config"
	"github.com/latchd/latch/lockserver"
)

// DefaultBasePort is `latchd dev`'s first client port: replicas serve
// clients on 7101-7103, peers on 7201-7203 and admin HTTP on 7301-7303.
const DefaultBasePort = 7101

// devFlags are the flags of `latchd dev`.
type devFlags struct {
	basePort int
	dataDir  string
	replicas int
	noHTTP   bool
	restore  string // a backup file to start the cell from
	tls      bool   // TLS everywhere, with certificates in DIR/tls
	ready    func() // called once the cell has a leader (or gave up waiting)
}

func devCommand(stdout, stderr io.Writer, lf *logFlags) *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "run a local three-replica cell in one process",
		Long: `dev runs a whole latch cell in one process on 127.0.0.1: replica i serves
clients on base-port+i-1 (7101, 7102, 7103 by default), peers on base-port+100+i-1
and admin HTTP on base-port+200+i-1. Its data lives in a temporary directory
removed on exit, unless --data-dir names one (kept, so the cell can be started
again with its data). Ctrl-C stops it.

dev decides by itself whether the cell is new: when no replica's data dir
(DIR/r1, r2, ...) holds Paxos state (missing, or the cell never voted), they
start as a new cell; otherwise a replica whose data dir holds none (wiped)
rebuilds its state from the others before it votes again.

--restore FILE starts the cell from a backup (GET /backup of a cell's admin
HTTP): before starting, it restores FILE into every replica's data dir, which
must hold no state, as "latchd restore" does.

--tls runs the cell with TLS: clients must present a certificate (its CN is
their principal, for the ACLs), the replicas talk mutual TLS and admin HTTP
is HTTPS. The certificates, from a throwaway CA, are in DIR/tls: ca.crt,
replica.crt for the replicas, and admin.crt (a superuser of the cell),
alice.crt and bob.crt (ordinary principals) with their keys. A later run
with the same --data-dir keeps them, unless they expire within a day or
cannot be used; then it makes new ones. dev prints the lines to paste.

Then, in another shell:
  export LATCH_ENDPOINTS=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
  latch put -p /demo/hello world
  latch tree /`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The replicas start one after another, so their first
			// attempts to reach each other fail: keep the default
			// (quiet) log to errors until the cell has a leader.
			var level slog.LevelVar
			level.Set(lf.level())
			if lf.verbose == 0 {
				level.Set(slog.LevelError)
			}
			log, err := lf.logger(stderr, &level)
			if err != nil {
				return err
			}
			f.ready = func() { level.Set(lf.level()) }
			if f.basePort < 0 || f.basePort+200+f.replicas > 65535 {
				return fmt.Errorf("%w: --base-port %d: want 1..%d (or 0 for free ports)", errUsage, f.basePort, 65535-200-f.replicas)
			}
			if f.replicas < 1 || f.replicas > 9 {
				return fmt.Errorf("%w: --replicas %d: want 1..9", errUsage, f.replicas)
			}
			return runDev(cmd.Context(), f, stdout, log)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.basePort, "base-port", DefaultBasePort, "first client port; 0 picks free ports")
	fl.StringVar(&f.dataDir, "data-dir", "", "keep the replicas' data here (default: a temporary directory, removed on exit)")
	fl.IntVar(&f.replicas, "replicas", 3, "number of replicas")
	fl.BoolVar(&f.noHTTP, "no-http", false, "do not serve the admin HTTP endpoints")
	fl.StringVar(&f.restore, "restore", "", "start the cell from this backup file, restored into every replica's data dir (which must hold no state)")
	fl.BoolVar(&f.tls, "tls", false, "TLS for clients (with client certificates: admin, a superuser, alice and bob), peers and admin HTTPS; the certificates go in DIR/tls")
	return cmd
}

// runDev runs a local cell until ctx ends, then stops it (removing its
// temporary data dir).
func runDev(ctx context.Context, f devFlags, out io.Writer, log *slog.Logger) error {
	cfg := config.Default()
	temporary := f.dataDir == ""
	if temporary && (f.restore != "" || f.tls) {
		// The backup and the certificates go in before the cell starts,
		// and StartCell removes only a temporary dir it made itself.
		d, err := os.MkdirTemp("", "latch-cell-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		f.dataDir = d
	}
	var certs *devcerts.Set
	if f.tls {
		set, withTLS, err := devTLS(f.dataDir, cfg, time.Now(), out)
		if err != nil {
			return fmt.Errorf("--tls: %w", err)
		}
		certs, cfg = &set, withTLS
	}
	if f.restore != "" {
		// The restored dirs hold state: the cell starts as an existing
		// one (newDevCell), and since every replica's dir holds state,
		// none rebuilds. The TLS files are beside them (DIR/tls).
		if err := restoreDirs(f.restore, devDataDirs(f.dataDir, f.replicas), namespaceConfig(cfg), out); err != nil {
			return fmt.Errorf("--restore: %w", err)
		}
	}
	newCell, err := newDevCell(f.dataDir, f.replicas)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cell, err := lockserver.StartCell(startCtx, lockserver.CellConfig{
		N: f.replicas, BasePort: f.basePort, DataDir: f.dataDir, Logger: log,
		Tune: func(sc *lockserver.Config) {
			config.Tune(sc, cfg)
			sc.Replica.RebuildEmpty = !newCell
		},
	})
	if err != nil {
		return fmt.Errorf("starting the cell: %w", err)
	}
	var stops []func()
	stop := func() error {
		for _, s := range stops {
			s()
		}
		return cell.Close()
	}
	if !f.noHTTP {
		for i := range cell.N() {
			c := cell.Config(i)
			s, err := startAdmin(cell.Server(i), c.Members[c.ID].HTTP, cfg, log.With("replica", c.ID))
			if err != nil {
				stop()
				return err
			}
			stops = append(stops, s)
		}
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	leader, err := cell.WaitLeader(waitCtx)
	cancelWait()
	if ctx.Err() != nil {
		return stop()
	}
	if err != nil {
		fmt.Fprintf(out, "latchd dev: no leader elected yet (%v); the replicas keep trying\n", err)
		if allRebuilding(cell) {
			fmt.Fprintf(out, "latchd dev: every replica found its data dir empty and waits for a leader to rebuild "+
				"its state from, which none of them can become: %s holds no cell; remove it to start a new one\n", f.dataDir)
		}
	}
	if f.ready != nil {
		f.ready()
	}
	devReady(out, cell, temporary, !f.noHTTP, leader, certs)
	<-ctx.Done()
	fmt.Fprintln(out, "latchd dev: stopping")
	if err := stop(); err != nil {
		return fmt.Errorf("stopping the cell: %w", err)
	}
	fmt.Fprintln(out, "latchd dev: stopped")
	return nil
}

// newDevCell reports whether the cell in dataDir is a new one: no data dir
// given (a temporary one), or no replica's (dataDir/r1, r2, ...: see
// lockserver.CellConfig) holding durable state (lockserver.HasState: a
// missing dir, or one of a cell stopped before it first voted). Then every
// replica starts as a founding member. Otherwise a replica whose data dir
// holds no state lost it and rebuilds it from the others before it votes
// (replica.Config.RebuildEmpty).
func newDevCell(dataDir string, replicas int) (bool, error) {
	if dataDir == "" {
		return true, nil
	}
	for _, dir := range devDataDirs(dataDir, replicas) {
		has, err := lockserver.HasState(dir)
		if err != nil {
			return false, fmt.Errorf("--data-dir %s: %w", dataDir, err)
		}
		if has {
			return false, nil
		}
	}
	return true, nil
}

// devDataDirs returns the data dirs of a dev cell's replicas in dataDir
// (dataDir/r1, r2, ...: see lockserver.CellConfig).
func devDataDirs(dataDir string, replicas int) []string {
	dirs := make([]string, replicas)
	for i := range dirs {
		dirs[i] = filepath.Join(dataDir, fmt.Sprintf("r%d", i+1))
	}
	return dirs
}

// allRebuilding reports whether every replica of the cell waits to rebuild
// lost state, which none of them can finish: every data dir holds a rebuild
// mark and nothing else (say, dirs of a cell first started without
// --new-cell, copied in). A dir without any state starts a new cell
// (newDevCell), so dev itself never leaves such dirs behind.
func allRebuilding(cell *lockserver.Cell) bool {
	for i := range cell.N() {
		if s := cell.Server(i); s == nil || !s.Status().Rebuilding {
			return false
		}
	}
	return true
}

// devSuperuser is the principal of the client certificate that
// `latchd dev --tls` makes a superuser; devClients are all those it makes
// client certificates for, the others ordinary principals to try ACLs with.
const devSuperuser = "admin"

var devClients = []string{devSuperuser, "alice", "bob"}

// devTLS makes sure dataDir/tls holds the certificates of a dev cell,
// keeping those of an earlier run if they can still be used at now
// (devcerts.Set.Check), and says so on out. It returns them and cfg with
// the TLS of a real cell's "tls" (clientCertAuth) and "peerTLS" sections
// on them, and devSuperuser as its superuser.
func devTLS(dataDir string, cfg config.Config, now time.Time, out io.Writer) (devcerts.Set, config.Config, error) {
	set := devcerts.Set{Dir: filepath.Join(dataDir, "tls"), Clients: devClients}
	_, statErr := os.Stat(set.Dir)
	switch err := set.Check(now); {
	case err == nil:
		fmt.Fprintf(out, "latchd dev: TLS files in %s, kept from an earlier run\n", set.Dir)
	case errors.Is(statErr, fs.ErrNotExist):
		if err := set.Make(now); err != nil {
			return set, cfg, err
		}
		fmt.Fprintf(out, "latchd dev: new TLS files in %s\n", set.Dir)
	default:
		if err := set.Make(now); err != nil {
			return set, cfg, err
		}
		fmt.Fprintf(out, "latchd dev: new TLS files in %s, replacing the old ones: %v\n", set.Dir, err)
	}
	cert, key := set.Files(devcerts.ReplicaName)
	cfg, err := cfg.WithTLS(&config.TLSFiles{CertFile: cert, KeyFile: key, CAFile: set.CA(), ClientCertAuth: true},
		&config.PeerTLSFiles{CertFile: cert, KeyFile: key, CAFile: set.CA()}, []string{devSuperuser}, devcerts.Host)
	return set, cfg, err
}

// devReady prints where the cell is and the lines to paste: the endpoints
// and, with certs (--tls), the superuser's certificate files and, if the
// admin endpoints are served (http), a curl command for admin HTTPS.
func devReady(out io.Writer, cell *lockserver.Cell, temporary, http bool, leader int, certs *devcerts.Set) {
	tmp := ""
	if temporary {
		tmp = " (temporary, removed on exit)"
	}
	scheme := "http://"
	if certs != nil {
		scheme = "https://"
	}
	fmt.Fprintf(out, "latchd dev: a %d-replica cell on loopback%s\n", cell.N(), tmp)
	for i := range cell.N() {
		c := cell.Config(i)
		m := c.Members[c.ID]
		admin := "-"
		if http {
			admin = scheme + m.HTTP
		}
		mark := ""
		if i == leader {
			mark = "  (leader)"
		}
		fmt.Fprintf(out, "  replica %d  client %s  peer %s  admin %s  data %s%s\n", c.ID, m.Client, m.Peer, admin, c.DataDir, mark)
	}
	endpoints := strings.Join(cell.Endpoints(), ",")
	if certs == nil {
		fmt.Fprintf(out, "\nexport LATCH_ENDPOINTS=%s\n\nCtrl-C stops the cell.\n", endpoints)
		return
	}
	ca := shellQuote(certs.CA())
	cert, key := certs.Files(devSuperuser)
	cert, key = shellQuote(cert), shellQuote(key)
	fmt.Fprintf(out, "\nexport LATCH_ENDPOINTS=%s LATCH_CACERT=%s LATCH_CERT=%s LATCH_KEY=%s\n", endpoints, ca, cert, key)
	fmt.Fprintf(out, "\n%s is a superuser of the cell; alice.crt/alice.key and bob.crt/bob.key in %s are ordinary principals, to try ACLs as non-superusers.\n",
		devSuperuser, shellQuote(certs.Dir))
	if http {
		c := cell.Config(0)
		fmt.Fprintf(out, "curl --cacert %s --cert %s --key %s %s%s/status\n", ca, cert, key, scheme, c.Members[c.ID].HTTP)
	}
	fmt.Fprintf(out, "\nCtrl-C stops the cell.\n")
}

// shellQuote quotes s for a POSIX shell, unless it needs no quotes.
func shellQuote(s string) string {
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+,:=@%", r)
	}
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !plain(r) }) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
