//go:build integration

package tests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds how long a starting daemon may take to answer `volume list`. A watchdog, not
// a performance threshold: a daemon that never comes up fails the test instead of hanging it.
const readyTimeout = 10 * time.Second

// stopTimeout bounds how long a SIGTERM'ed daemon may take to exit before the test fails.
const stopTimeout = 30 * time.Second

// daemon is one `extrasphere serve` under test: a data dir, a fixed TCP port and a log file that
// all its incarnations (restarts) share.
type daemon struct {
	t       *testing.T
	dir     string // --data, and where the sockets live
	port    int    // --nbd 127.0.0.1:port
	logPath string
	proc    *exec.Cmd     // the running incarnation, nil when stopped
	exited  chan struct{} // closed when proc has exited; waitErr is set before
	waitErr error

	host     string // the address it listens on (default 127.0.0.1)
	nodePort int    // --node host:nodePort when > 0 (paired nodes, mirrors)
	netns    string // run inside this network namespace (ip netns exec) when set
	insecure bool   // --nbd-insecure: plain NBD on TCP too (loopback hosts without daemonOpts.TLS)

	args []string // extra serve flags
	wrap []string // a command (and its flags) that runs serve, such as prlimit
	bin  string   // the daemon binary, when not esBin
}

// daemonOpts start a daemon on another address, with a node port, or in a network namespace.
type daemonOpts struct {
	Node  bool   // listen on a node port (--node) and run `node init`
	Host  string // listen address (default 127.0.0.1)
	NetNS string // network namespace to run in
	Name  string // node name for `node init` (default "node")
	// TLS keeps the default door: NBD over TCP requires TLS and a client certificate. Without
	// it a daemon on a loopback host runs with --nbd-insecure, so plain nbd:// clients
	// (TCPURI) work; one on another address always requires TLS (the daemon refuses plain
	// TCP there).
	TLS bool

	Args []string // extra `serve` flags, after the harness's own (a later flag wins)
	Wrap []string // a command that runs serve, such as prlimit --nofile=300:300 (it must exec serve)
	Bin  string   // the daemon binary (default esBin)
}

// startDaemon starts a daemon on a fresh data dir. It is killed when the test ends, and its log is
// printed if the test failed.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonOpts(t, daemonOpts{})
}

// startDaemonOpts is startDaemon with options; a node daemon has its identity made already.
func startDaemonOpts(t *testing.T, o daemonOpts) *daemon {
	t.Helper()
	base := t.TempDir()
	d := &daemon{
		t:       t,
		dir:     filepath.Join(base, "data"),
		port:    freePort(t),
		logPath: filepath.Join(base, "daemon.log"),
		host:    o.Host,
		netns:   o.NetNS,
		args:    o.Args,
		wrap:    o.Wrap,
		bin:     o.Bin,
	}
	if d.host == "" {
		d.host = "127.0.0.1"
	}
	if ip := net.ParseIP(d.host); !o.TLS && ip != nil && ip.IsLoopback() {
		d.insecure = true
	}
	if o.Node {
		d.nodePort = freePort(t)
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.proc != nil {
			d.proc.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			d.dumpLog()
		}
	})
	d.start()
	if o.Node {
		name := o.Name
		if name == "" {
			name = "node"
		}
		d.CLI("node", "init", "--name", name)
	}
	return d
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (d *daemon) nbdSock() string { return filepath.Join(d.dir, "nbd.sock") }
func (d *daemon) apiAddr() string { return "unix:" + filepath.Join(d.dir, "api.sock") }
func (d *daemon) tcpAddr() string { return net.JoinHostPort(d.host, strconv.Itoa(d.port)) }

// nodeAddr is the daemon's node port, HOST:PORT.
func (d *daemon) nodeAddr() string { return net.JoinHostPort(d.host, strconv.Itoa(d.nodePort)) }

// UnixURI is the export's NBD URI on the unix socket.
func (d *daemon) UnixURI(vol string) string {
	return "nbd+unix:///" + vol + "?socket=" + d.nbdSock()
}

// TCPURI is the export's plain NBD URI on TCP (daemons with --nbd-insecure).
func (d *daemon) TCPURI(vol string) string { return "nbd://" + d.tcpAddr() + "/" + vol }

// TLSURI is the export's nbds:// URI with libnbd's tls-certificates= naming certDir (the
// directory `client add --out` wrote).
func (d *daemon) TLSURI(vol, certDir string) string {
	return "nbds://" + d.tcpAddr() + "/" + vol + "?tls-certificates=" + certDir
}

// URIs are both of the export's URIs, unix first.
func (d *daemon) URIs(vol string) []string { return []string{d.UnixURI(vol), d.TCPURI(vol)} }

// start launches an incarnation and waits until its API answers.
func (d *daemon) start() {
	d.t.Helper()
	if d.proc != nil {
		d.t.Fatal("daemon.start: already running")
	}
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== test harness: start %s\n", time.Now().Format(time.RFC3339Nano))
	bin := esBin
	if d.bin != "" {
		bin = d.bin
	}
	args := []string{bin, "serve", "--data", d.dir, "--nbd", d.tcpAddr(), "--nbd-socket", d.nbdSock(), "--api", d.apiAddr()}
	if d.nodePort > 0 {
		args = append(args, "--node", d.nodeAddr())
	}
	if d.insecure {
		args = append(args, "--nbd-insecure")
	}
	args = append(append(append([]string{}, d.wrap...), args...), d.args...)
	if d.netns != "" {
		args = append([]string{"ip", "netns", "exec", d.netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s serve: %v", esBin, err)
	}
	exited := make(chan struct{})
	d.proc, d.exited = cmd, exited
	go func() {
		d.waitErr = cmd.Wait()
		close(exited)
	}()
	d.waitReady()
}

// waitReady polls `volume list --json` until it succeeds.
func (d *daemon) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-d.exited:
			d.proc = nil
			d.t.Fatalf("daemon exited while starting: %v (log below)", d.waitErr)
		default:
		}
		code, out := d.CLIStatus("volume", "list", "--json")
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not answer `volume list --json` within %v: exit %d: %s", readyTimeout, code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (d *daemon) Stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		d.proc.Process.Kill()
		<-d.exited
		d.proc = nil
		d.t.Fatalf("daemon did not exit within %v of SIGTERM", stopTimeout)
	}
	d.proc = nil
	if d.waitErr != nil {
		d.t.Fatalf("daemon exit after SIGTERM: %v (want status 0)", d.waitErr)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) Kill() {
	d.t.Helper()
	d.signal(syscall.SIGKILL)
	<-d.exited
	d.proc = nil
	var exit *exec.ExitError
	if !errors.As(d.waitErr, &exit) {
		d.t.Fatalf("daemon after SIGKILL: %v, want killed", d.waitErr)
	}
}

// Restart starts a new incarnation on the same data dir, sockets and port.
func (d *daemon) Restart() {
	d.t.Helper()
	d.start()
}

func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if d.proc == nil {
		d.t.Fatal("daemon is not running")
	}
	select {
	case <-d.exited:
		d.proc = nil
		d.t.Fatalf("daemon had already exited: %v", d.waitErr)
	default:
	}
	if err := d.proc.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal daemon: %v", err)
	}
}

// CLIStatus runs the CLI against this daemon and returns its exit status and output.
func (d *daemon) CLIStatus(args ...string) (int, string) {
	d.t.Helper()
	return runStatus(d.t, esBin, append([]string{"--data=" + d.dir, "--api=" + d.apiAddr()}, args...)...)
}

// CLI runs the CLI against this daemon; it must succeed.
func (d *daemon) CLI(args ...string) string {
	d.t.Helper()
	code, out := d.CLIStatus(args...)
	if code != 0 {
		d.t.Fatalf("extrasphere %s: exit %d:\n%s", quoteArgs(args), code, out)
	}
	return out
}

// CreateVolume creates a volume (size like "64M") with extra flags.
func (d *daemon) CreateVolume(name, size string, extra ...string) {
	d.t.Helper()
	d.CLI(append([]string{"volume", "create", name, "--size", size}, extra...)...)
}

func (d *daemon) dumpLog() {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		d.t.Logf("daemon log %s: %v", d.logPath, err)
		return
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	d.t.Logf("daemon log %s:\n%s", d.logPath, b)
}
