package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/api"
	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Shutdown budgets: the NBD server drains in-flight requests, the API
// finishes its requests.
const (
	nbdDrainTimeout = 20 * time.Second
	apiStopTimeout  = 5 * time.Second
	socketMode      = 0o660
)

type serveOptions struct {
	nbdAddr   string
	nbdSocket string
	nodeAddr  string

	// The NBD door (serve_nbd.go).
	nbdInsecure bool   // plain NBD on the (loopback) TCP address too
	socketGroup string // group of the unix sockets

	// The API's TCP door (serve_api.go).
	allowPaths []string // host directories API requests over TCP may name
	apiSANs    []string // extra names of the API's HTTPS certificate

	nbdLimits nbdLimitFlags // the NBD server's bounds (limits.go)
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: serve every volume over NBD and the API",
		Long: `Run the daemon. It opens every datastore and volume of the data directory,
serves each volume as an NBD export on the unix socket (and on TCP unless
--nbd ""), and serves the API. SIGTERM or SIGINT drains the NBD connections,
flushes every volume and exits 0; clients with a reconnect delay resume on
the next daemon.

NBD over TCP requires TLS with a client certificate this node issued
(extrasphere client add); plain TCP only with --nbd-insecure, on a loopback
address. The unix sockets are mode 0660: their owner and the --socket-group
may use every volume.`,
		Example: `  extrasphere serve --data /var/lib/extrasphere
  extrasphere serve --data ./extrasphere-data --nbd "" --api tcp:127.0.0.1:8080
  extrasphere serve --api tcp:0.0.0.0:8443 --allow-path /srv/images`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			addr, err := g.apiAddr(c)
			if err != nil {
				return err
			}
			if err := o.nbdLimits.check(c.CommandPath()); err != nil {
				return err
			}
			return serve(c.Context(), g, o, addr)
		},
	}
	f := c.Flags()
	f.StringVar(&o.nbdAddr, "nbd", "127.0.0.1:10809", `NBD TCP listen address, TLS with client certificates ("" disables TCP)`)
	f.BoolVar(&o.nbdInsecure, "nbd-insecure", false, "also accept plain NBD (no TLS, every volume) on --nbd; loopback addresses only")
	f.StringVar(&o.socketGroup, "socket-group", "", "group (name or id) of the unix sockets, whose members may use them")
	f.StringVar(&o.nbdSocket, "nbd-socket", "", "NBD unix socket (default DATA/nbd.sock)")
	f.StringVar(&o.nodeAddr, "node", "", `node port for paired nodes (mirrors, failover), e.g. 0.0.0.0:10810 ("" disables it)`)
	f.StringArrayVar(&o.allowPaths, "allow-path", nil, "a host directory API requests over TCP may name (import, export, restore, datastores, repositories, file:// mirrors); repeatable; none by default")
	f.StringArrayVar(&o.apiSANs, "api-san", nil, "an extra DNS name or IP address for the API's HTTPS certificate (with --api tcp:); repeatable")
	o.nbdLimits.register(f)
	return c
}

func serve(ctx context.Context, g *globals, o serveOptions, apiAddr string) error {
	var h slog.Handler = slog.NewTextHandler(g.stderr, nil)
	if g.json {
		h = slog.NewJSONHandler(g.stderr, nil)
	}
	log := slog.New(h)
	raiseOpenFileLimit(log)
	data, err := filepath.Abs(g.data)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", g.data, err)
	}
	sock := o.nbdSocket
	if sock == "" {
		sock = filepath.Join(data, "nbd.sock")
	}
	if sock, err = filepath.Abs(sock); err != nil {
		return fmt.Errorf("nbd socket: %w", err)
	}
	apiNet, apiPath, err := splitAPIAddr(apiAddr)
	if err != nil {
		return err
	}
	if err := checkNBDInsecure(o.nbdAddr, o.nbdInsecure); err != nil {
		return err
	}

	// The engine first: its catalog lock keeps a second daemon on the
	// same data dir from touching our sockets.
	start := time.Now()
	fps := failpoint.FromEnv()
	ns, err := node.Open(filepath.Join(data, "node"), node.Options{AdvertiseAddr: o.nodeAddr, Logger: log, Failpoints: fps})
	if err != nil {
		return err
	}
	ca, nbdCert, err := openClientCA(data, o.nbdAddr, ns)
	if err != nil {
		return err
	}
	eng, err := engine.Open(ctx, engine.Config{DataDir: data, Logger: log, NBDSocket: sock, NBDAddr: o.nbdAddr,
		NBDInsecure: o.nbdInsecure, ClientCA: ca, Failpoints: fps, Node: ns})
	if err != nil {
		return err
	}
	engClosed := false
	defer func() {
		if !engClosed {
			eng.Close()
		}
	}()

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	unixLn, err := listenUnix(sock)
	if err != nil {
		return fmt.Errorf("nbd socket: %w", err)
	}
	lns = append(lns, unixLn)
	if err := chownGroup(sock, o.socketGroup); err != nil {
		return err
	}
	var tcpLn net.Listener
	if o.nbdAddr != "" {
		if tcpLn, err = net.Listen("tcp", o.nbdAddr); err != nil {
			return fmt.Errorf("nbd tcp %s: %w", o.nbdAddr, err)
		}
		lns = append(lns, tcpLn)
	}
	doors, err := listenAPI(data, apiNet, apiPath, o, log)
	if err != nil {
		return err
	}
	lns = append(lns, doors.listeners()...)
	if err := chownGroup(doors.socketPath(), o.socketGroup); err != nil {
		return err
	}

	var nodeLn net.Listener
	if o.nodeAddr != "" {
		if nodeLn, err = net.Listen("tcp", o.nodeAddr); err != nil {
			return fmt.Errorf("node port %s: %w", o.nodeAddr, err)
		}
		lns = append(lns, nodeLn)
	}

	// STARTTLS is offered with the client CA's server certificate (and
	// the node's to paired nodes' replica streams, serve_nbd.go); TCP
	// requires it unless --nbd-insecure.
	srv := nbd.NewServer(eng, o.nbdLimits.apply(nbd.Options{Logger: log, TLS: nbdServerTLS(ca, nbdCert, ns), Door: nbdDoor(eng, o.nbdInsecure)}))
	errc := make(chan error, 8)
	go func() { errc <- srv.Serve(unixLn) }()
	if tcpLn != nil {
		go func() { errc <- srv.Serve(tcpLn) }()
	}
	info := apischema.Info{Version: version, DataDir: data, NBDSocket: sock, NBDTCP: o.nbdAddr}
	apiServers := doors.serve(eng, info, log, errc)
	var ps *http.Server
	if nodeLn != nil {
		// The node port answers anyone on the network (pairing), so it has
		// the API's limits: connections, idle time, header size, and a
		// write deadline per response.
		ps = &http.Server{Handler: writeDeadlines(ns.Handler(api.NewPeerHandler(eng, log))), ReadHeaderTimeout: apiReadHeaderTimeout,
			IdleTimeout: apiIdleTimeout, MaxHeaderBytes: apiMaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { errc <- ps.Serve(tls.NewListener(newLimitListener(nodeLn, maxAPIConns), ns.ServerTLS())) }()
	}
	log.Info("extrasphere serving", "version", version, "data", data, "nbd_socket", sock, "nbd_tcp", o.nbdAddr, "nbd_insecure", o.nbdInsecure,
		"api", apiAddr, "node", o.nodeAddr, "volumes", len(eng.ListExports(ctx)), "startup", time.Since(start).Round(time.Millisecond))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining NBD connections")
	case serveErr = <-errc:
		log.Error("listener failed, shutting down", "err", serveErr)
	}

	// Writes a mirror's block policy holds back for a replica that does
	// not answer fail now (EIO): the drain below would wait for them.
	eng.StopMirrorWaits()
	actx, cancel := context.WithTimeout(context.Background(), apiStopTimeout)
	for _, hs := range apiServers {
		hs.Shutdown(actx) // stop taking commands first
	}
	if ps != nil {
		ps.Shutdown(actx)
	}
	cancel()
	nctx, cancel := context.WithTimeout(context.Background(), nbdDrainTimeout)
	if err := srv.Shutdown(nctx); err != nil {
		log.Warn("nbd drain cut short", "err", err)
	}
	cancel()
	engClosed = true
	if err := eng.Close(); err != nil {
		return fmt.Errorf("close engine: %w", err)
	}
	log.Info("extrasphere stopped")
	if serveErr != nil && !errors.Is(serveErr, nbd.ErrServerClosed) && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// splitAPIAddr parses unix:PATH or tcp:HOST:PORT.
func splitAPIAddr(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "unix:") && len(a) > len("unix:"):
		p, err := filepath.Abs(strings.TrimPrefix(a, "unix:"))
		return "unix", p, err
	case strings.HasPrefix(a, "tcp:"):
		hp := strings.TrimPrefix(a, "tcp:")
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return "", "", &usageError{cmd: "extrasphere serve", err: fmt.Errorf("--api %q: %v", a, err)}
		}
		return "tcp", hp, nil
	}
	return "", "", &usageError{cmd: "extrasphere serve", err: fmt.Errorf("--api %q: want unix:PATH or tcp:HOST:PORT", a)}
}

// listenUnix listens on a unix socket path with mode 0660. A stale socket
// left by a killed daemon is removed; a live one (another daemon answers)
// or a path that is not a socket is refused.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	case err == nil:
		if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening there (another extrasphere serve?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode; tighten or widen it to
	// owner+group (a group such as libvirt-qemu can then connect).
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}
