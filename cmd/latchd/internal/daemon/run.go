package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/latchd/internal/admin"
	"github.com/latchd/latch/cmd/latchd/internal/config"
	"github.com/latchd/latch/lockserver"
)

// runFlags are the flags of `latchd --config FILE`.
type runFlags struct {
	file    string
	id      uint64
	dataDir string
	http    string
	newCell bool
	join    bool

	certFile, keyFile, caFile             string
	clientCertAuth                        bool
	peerCertFile, peerKeyFile, peerCAFile string
}

func (f *runFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "config", "c", "", "configuration file (JSON; see docs/operations.md)")
	fl.Uint64Var(&f.id, "id", 0, "this replica's id (overrides myid)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory (overrides dataDir)")
	fl.StringVar(&f.http, "http", "", `admin HTTP address (overrides this node's "http"; "" turns it off)`)
	fl.BoolVar(&f.newCell, "new-cell", false, "this is the first start of a brand-new cell: an empty data dir starts as a founding member "+
		"instead of rebuilding lost state from the peers; a data dir that holds state ignores it. Never keep it in a unit file")
	fl.BoolVar(&f.join, "join", false, "start as a new member joining a running cell: the data dir is empty, \"nodes\" lists this replica and "+
		"replicas of the cell to reach (seeds: at least one, and every one with a higher id), and this id was added with \"latch members add\"; "+
		"it learns the cell's state, then votes once promoted. "+
		"A data dir that holds state ignores it")
	fl.StringVar(&f.certFile, "cert-file", "", "PEM certificate of the client listener and admin HTTPS (overrides tls.certFile)")
	fl.StringVar(&f.keyFile, "key-file", "", "PEM private key of --cert-file (overrides tls.keyFile)")
	fl.StringVar(&f.caFile, "trusted-ca-file", "", "PEM CAs of the client certificates (overrides tls.caFile)")
	fl.BoolVar(&f.clientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file (overrides tls.clientCertAuth)")
	fl.StringVar(&f.peerCertFile, "peer-cert-file", "", "PEM certificate for the replicas' mutual TLS (overrides peerTLS.certFile)")
	fl.StringVar(&f.peerKeyFile, "peer-key-file", "", "PEM private key of --peer-cert-file (overrides peerTLS.keyFile)")
	fl.StringVar(&f.peerCAFile, "peer-trusted-ca-file", "", "PEM CAs of the replicas' peer certificates (overrides peerTLS.caFile)")
}

// config reads the file and applies the flags that were given.
func (f *runFlags) config(cmd *cobra.Command) (config.Config, error) {
	if f.file == "" {
		return config.Config{}, fmt.Errorf("%w: --config FILE is required (or run \"latchd dev\" for a local cell)", errUsage)
	}
	file, err := config.Load(f.file)
	if err != nil {
		return config.Config{}, err
	}
	var o config.Overrides
	if cmd.Flags().Changed("id") {
		o.ID = &f.id
	}
	if cmd.Flags().Changed("data-dir") {
		o.DataDir = &f.dataDir
	}
	if cmd.Flags().Changed("http") {
		o.HTTP = &f.http
	}
	for _, fl := range []struct {
		name string
		v    *string
		o    **string
	}{
		{"cert-file", &f.certFile, &o.CertFile}, {"key-file", &f.keyFile, &o.KeyFile}, {"trusted-ca-file", &f.caFile, &o.CAFile},
		{"peer-cert-file", &f.peerCertFile, &o.PeerCertFile}, {"peer-key-file", &f.peerKeyFile, &o.PeerKeyFile},
		{"peer-trusted-ca-file", &f.peerCAFile, &o.PeerCAFile},
	} {
		if cmd.Flags().Changed(fl.name) {
			*fl.o = fl.v
		}
	}
	if cmd.Flags().Changed("client-cert-auth") {
		o.ClientCertAuth = &f.clientCertAuth
	}
	c, err := file.Apply(o).Resolve()
	if err != nil {
		return c, err
	}
	c.NewCell, c.Join = f.newCell, f.join
	return c, c.CheckStart()
}

// runReplica runs one replica until ctx ends: New (recovering the data dir),
// the admin HTTP server, then Run.
func runReplica(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// The server gets log as it is: it adds "replica" (and "component")
	// itself, and a slog key added twice is written twice.
	sc, err := cfg.Server(log)
	if err != nil {
		return err
	}
	log = log.With("replica", cfg.MyID)
	srv, err := lockserver.New(sc)
	if err != nil {
		return err
	}
	self := cfg.Self()
	stopHTTP := func() {}
	if self.HTTP != "" {
		stopHTTP, err = startAdmin(srv, self.HTTP, cfg, log)
		if err != nil {
			srv.Close()
			return err
		}
	}
	log.Info("latchd: starting", "client", self.Client, "peer", self.Peer, "http", self.HTTP, "dataDir", cfg.DataDir, "members", len(cfg.Nodes), "newCell", cfg.NewCell, "join", cfg.Join)
	// SIGTERM or Ctrl-C ends ctx. Run's Close then first hands the
	// leadership off if this replica leads (lockserver logs "resigned
	// leadership" with the new leader): the others elect one at once
	// instead of waiting out this replica's master lease.
	err = srv.Run(ctx)
	stopHTTP()
	if errors.Is(err, lockserver.ErrRemoved) {
		// A member change took this replica out of the cell: a clean end,
		// not a failure (a service manager must not restart it).
		log.Warn("latchd: removed from the cell by a member change; exiting (its data dir is of no further use)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("replica %d: %w", cfg.MyID, err)
	}
	log.Info("latchd: stopped")
	return nil
}

// timings is the /status "info" of a replica: the configured timings.
func timings(c config.Config) map[string]any {
	return map[string]any{
		"lease": c.Lease.String(), "heartbeat": c.Heartbeat.String(), "electionTimeout": c.ElectionTimeout.String(),
		"sessionLease": c.SessionLease.String(), "grace": c.Grace.String(),
		"lockDelay": c.LockDelay.String(), "lockDelayCap": c.LockDelayCap.String(),
	}
}

// startAdmin serves the admin HTTP endpoints of srv on addr, as cfg says
// (HTTPS with cfg.TLS; cfg.Superusers alone may use the guarded ones; the
// other members asked over TLS with cfg.ClientTLS), until the returned
// stop is called. log is the replica's.
func startAdmin(srv admin.Server, addr string, cfg config.Config, log *slog.Logger) (stop func(), err error) {
	opts := admin.Options{Logger: log, Info: timings(cfg), Superusers: cfg.Superusers}
	if cfg.ClientTLS != nil {
		opts.Peers = func(ctx context.Context, addr string) (client.Status, error) {
			return client.StatusOfTLS(ctx, addr, cfg.ClientTLS)
		}
	}
	return serveAdmin(addr, admin.Handler(srv, opts), cfg.TLS, log)
}

// serveAdmin listens on addr and serves h (HTTPS with tc, if not nil)
// until the returned stop is called. Listening happens here, so a port in
// use is an error at once.
func serveAdmin(addr string, h http.Handler, tc *tls.Config, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin HTTP: %w", err)
	}
	// A clone: ServeTLS adds HTTP/2 to the config it is given, which the
	// client listener (and, in latchd dev, the other replicas) also use.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc.Clone()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve := hs.Serve
		if tc != nil {
			serve = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin HTTP stopped", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		<-done
	}, nil
}
