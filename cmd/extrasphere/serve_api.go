package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/api"
	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
)

// Limits of the API's HTTP servers: a client that sends its headers
// slowly, or keeps an idle connection, is cut off (and one that stops
// reading a response: apiWriteTimeout).
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiIdleTimeout       = 2 * time.Minute
	apiMaxHeaderBytes    = 64 << 10 // a bearer token and a few headers; net/http's 1 MiB default is for browsers
)

// maxAPIConns bounds the TCP door's open connections (each costs a
// goroutine and buffers before any token is checked). The CLI uses one at
// a time and a UI a handful; further clients wait in the listen backlog.
const maxAPIConns = 64

// apiDoors are the API's listeners: the unix socket always (the local
// door, where the first token is made), and HTTPS on TCP with --api tcp:.
type apiDoors struct {
	unix   net.Listener
	tcp    net.Listener // TLS; nil without --api tcp:
	tokens *api.TokenStore
	paths  *api.PathPolicy
}

// listenAPI opens the API's listeners. With --api unix:PATH the local door
// is PATH; with --api tcp:HOST:PORT it is DATA/api.sock, and TCP serves
// HTTPS with a certificate from DATA/api naming HOST (every local address
// if HOST is unspecified) and each --api-san.
func listenAPI(data, apiNet, apiPath string, o serveOptions, log *slog.Logger) (*apiDoors, error) {
	dir := filepath.Join(data, "api")
	tokens, err := api.OpenTokens(dir)
	if err != nil {
		return nil, err
	}
	d := &apiDoors{tokens: tokens}
	if d.paths, err = api.NewPathPolicy(o.allowPaths); err != nil {
		return nil, &usageError{cmd: "extrasphere serve", err: fmt.Errorf("--allow-path: %w", err)}
	}
	sock := apiPath
	if apiNet == "tcp" {
		sock = filepath.Join(data, "api.sock")
	}
	if d.unix, err = listenUnix(sock); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", sock, err)
	}
	if apiNet != "tcp" {
		return d, nil
	}
	host, _, _ := net.SplitHostPort(apiPath)
	cfg, err := api.ServerTLS(dir, apiCertNames(host, o.apiSANs))
	if err != nil {
		d.unix.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", apiPath)
	if err != nil {
		d.unix.Close()
		return nil, fmt.Errorf("api tcp %s: %w", apiPath, err)
	}
	d.tcp = tls.NewListener(newLimitListener(ln, maxAPIConns), cfg)
	if len(tokens.List()) == 0 {
		log.Warn("the API over TCP has no token yet: make one on this host with `extrasphere token create NAME --role admin`",
			"addr", apiPath)
	}
	log.Info("api over TCP: HTTPS with bearer tokens", "addr", apiPath, "ca", filepath.Join(dir, api.CACertFile),
		"allowed_paths", d.paths.Dirs())
	return d, nil
}

// socketPath is the unix socket's path (the local door).
func (d *apiDoors) socketPath() string { return d.unix.Addr().String() }

// listeners returns the open listeners (for closing on a failed start).
func (d *apiDoors) listeners() []net.Listener {
	if d.tcp != nil {
		return []net.Listener{d.unix, d.tcp}
	}
	return []net.Listener{d.unix}
}

// serve starts an HTTP server per door and returns them; each one's end
// is sent to errc.
func (d *apiDoors) serve(eng *engine.Engine, info apischema.Info, log *slog.Logger, errc chan<- error) []*http.Server {
	newServer := func(a api.Access) *http.Server {
		return &http.Server{
			Handler:           writeDeadlines(api.NewHandler(eng, api.Options{Info: info, Logger: log, Access: a, Tokens: d.tokens})),
			ReadHeaderTimeout: apiReadHeaderTimeout,
			IdleTimeout:       apiIdleTimeout,
			MaxHeaderBytes:    apiMaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	local := newServer(api.Access{Local: true})
	go func() { errc <- local.Serve(d.unix) }()
	servers := []*http.Server{local}
	if d.tcp != nil {
		remote := newServer(api.Access{Paths: d.paths})
		go func() { errc <- remote.Serve(d.tcp) }()
		servers = append(servers, remote)
	}
	return servers
}

// apiCertNames are the names the API's server certificate must carry for
// a listen host: the host itself, or for an unspecified address (0.0.0.0,
// [::], "") every address of this machine and its host name; "localhost"
// and the loopback addresses when it is reachable by them; and extra.
func apiCertNames(host string, extra []string) []string {
	var names []string
	add := func(n string) {
		for _, m := range names {
			if m == n {
				return
			}
		}
		names = append(names, n)
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		if h, err := os.Hostname(); err == nil && h != "" {
			add(h)
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					add(n.IP.String())
				}
			}
		}
		add("localhost")
	case host == "localhost" || (ip != nil && ip.IsLoopback()):
		add(host)
		add("localhost")
		add("127.0.0.1")
		add("::1")
	default:
		add(host)
	}
	for _, n := range extra {
		add(n)
	}
	return names
}

// limitListener accepts at most cap(sem) connections at a time: Accept
// waits for one to close, or for the listener to close.
type limitListener struct {
	net.Listener
	sem       chan struct{} // one token per open connection
	done      chan struct{} // closed by Close
	closeOnce func()
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	l := &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
	l.closeOnce = sync.OnceFunc(func() { close(l.done) })
	return l
}

func (l *limitListener) Close() error {
	l.closeOnce()
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

// limitConn gives its listener's token back when closed (once).
type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
