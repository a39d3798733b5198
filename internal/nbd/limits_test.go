package nbd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// Every option's data is checked against what that option can need before
// anything is allocated: over it, the option gets an error reply (and the
// session goes on) or, past maxOptionSkip or for EXPORT_NAME, the session
// ends.
func TestOptionDataLimits(t *testing.T) {
	s := startServer(t)
	cases := []struct {
		name string
		opt  uint32
		n    int
		want uint32
	}{
		{"GoOverLimit", optGo, maxGoData + 1, repErrTooBig},
		{"InfoOverLimit", optInfo, maxGoData + 1, repErrTooBig},
		{"SetMetaOverLimit", optSetMetaContext, maxMetaData + 1, repErrTooBig},
		{"ListMetaOverLimit", optListMetaContext, maxMetaOption(), repErrTooBig},
		{"ListWithData", optList, 100, repErrInvalid},
		{"StructuredWithData", optStructuredReply, 100, repErrInvalid},
		{"UnknownWithData", 4242, maxOptionSkip, repErrUnsup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s)
			r.ClientFlags(cflagFixedNew)
			r.Option(tc.opt, make([]byte, tc.n))
			if got := r.FinalReply(tc.opt).Final; got != tc.want {
				t.Fatalf("reply %#x, want %#x", got, tc.want)
			}
			r.Option(optGo, nbdraw.GoPayload("disk"))
			if got := r.FinalReply(optGo).Final; got != repAck {
				t.Fatalf("GO after the oversized option: %#x", got)
			}
		})
	}
	ends := []struct {
		name string
		opt  uint32
		n    uint32
	}{
		{"ExportNameOverLimit", optExportName, maxStringLen + 1},
		{"GoPastSkip", optGo, maxOptionSkip + 1},
		{"UnknownPastSkip", 4242, 1 << 20},
	}
	for _, tc := range ends {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s)
			r.ClientFlags(cflagFixedNew)
			b := binary.BigEndian.AppendUint64(nil, optMagic)
			b = binary.BigEndian.AppendUint32(b, tc.opt)
			r.Write(binary.BigEndian.AppendUint32(b, tc.n)) // the header alone: nothing is read
			if !r.ClosedSilently() {
				t.Fatalf("server waited for %d bytes of option %d", tc.n, tc.opt)
			}
		})
	}
	t.Run("AbortWithData", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Option(optAbort, make([]byte, 100))
		if got, _ := r.OptReply(optAbort); got != repAck {
			t.Fatalf("abort: %#x, want ACK", got)
		}
	})
}

func maxMetaOption() int { return maxMetaData + 1000 }

// NBD_OPT_EXPORT_NAME ends negotiation as GO does: after
// NBD_OPT_STRUCTURED_REPLY the transmission uses structured replies (spec:
// the server MUST use them for READ) and the meta contexts set for the same
// export.
func TestExportNameKeepsStructuredReplies(t *testing.T) {
	s := startServer(t)
	r := dialRaw(t, s)
	r.ClientFlags(cflagFixedNew | cflagNoZeroes)
	r.Option(optStructuredReply, nil)
	if typ, _ := r.OptReply(optStructuredReply); typ != repAck {
		t.Fatalf("structured reply: %#x", typ)
	}
	r.Option(optSetMetaContext, metaPayload("disk", "base:allocation"))
	if typ := r.FinalReply(optSetMetaContext).Final; typ != repAck {
		t.Fatalf("set meta context: %#x", typ)
	}
	r.Option(optExportName, []byte("disk"))
	var info [10]byte
	r.Read(info[:])
	if flags := binary.BigEndian.Uint16(info[8:]); flags&tflagDF == 0 {
		t.Fatalf("transmission flags %#x lack NBD_FLAG_SEND_DF", flags)
	}
	if err := s.disk.WriteAt(t.Context(), []byte("abcd"), 4096, 0); err != nil {
		t.Fatal(err)
	}
	r.Request(cmdRead, 0, 5, 4096, 4, nil)
	flags, typ, h, p := r.Chunk()
	if typ != chunkOffsetData || h != 5 || flags&chunkFlagDone == 0 || len(p) != 12 || string(p[8:]) != "abcd" {
		t.Fatalf("READ reply: flags %#x type %d handle %d payload %q, want one OFFSET_DATA chunk", flags, typ, h, p)
	}
	r.Request(cmdBlockStatus, 0, 6, 0, 1<<20, nil)
	if _, typ, h, _ := r.Chunk(); typ != chunkBlockStatus || h != 6 {
		t.Fatalf("BLOCK_STATUS reply type %d handle %d, want a block status chunk", typ, h)
	}
}

// logCounter counts log records whose message starts with prefix.
type logCounter struct {
	prefix string
	n      atomic.Int64
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

// greets reports whether the server at network/addr sends its greeting to
// a new connection (rather than closing it at once), and returns the
// connection.
func greets(t *testing.T, network, addr string) (net.Conn, bool) {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(watchdog))
	var hello [18]byte
	_, err = io.ReadFull(nc, hello[:])
	return nc, err == nil
}

// Connections over a cap are closed at accept, and logged once per client
// address per minute however many there are.
func TestConnectionCaps(t *testing.T) {
	logs := &logCounter{prefix: "nbd connection refused"}
	exp := &testExports{devs: map[string]*Export{"disk": {Name: "disk", Device: memdev.New(1<<20, false)}}}
	srv := NewServer(exp, Options{Logger: slog.New(logs), MaxConns: 4, MaxConnsPerClient: 2})
	sock, tcp := serveBoth(t, srv)

	for i := range 2 {
		if _, ok := greets(t, "tcp", tcp); !ok {
			t.Fatalf("TCP connection %d refused under the caps", i)
		}
	}
	for range 5 {
		if _, ok := greets(t, "tcp", tcp); ok {
			t.Fatal("a third TCP connection from one address was served")
		}
	}
	// Unix socket clients count only against the total.
	var last net.Conn
	for i := range 2 {
		nc, ok := greets(t, "unix", sock)
		if !ok {
			t.Fatalf("unix connection %d refused under the total cap", i)
		}
		last = nc
	}
	if _, ok := greets(t, "unix", sock); ok {
		t.Fatal("a fifth connection was served over a total cap of 4")
	}
	if got := logs.n.Load(); got != 2 {
		t.Fatalf("%d refusal log lines, want 2 (one per client address)", got)
	}
	// A slot that frees up is usable again.
	last.Close()
	waitFor(t, "the closed connection to be counted out", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns) == 3
	})
	if _, ok := greets(t, "unix", sock); !ok {
		t.Fatal("a connection was refused after a slot freed up")
	}
}

// flakyListener fails Accept with errs, then hands out conns, then blocks
// until closed.
type flakyListener struct {
	mu     sync.Mutex // guards errs, conns
	errs   []error
	conns  []net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	if len(l.conns) > 0 {
		c := l.conns[0]
		l.conns = l.conns[1:]
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *flakyListener) Addr() net.Addr { return &net.UnixAddr{Name: "flaky", Net: "unix"} }

// No accept error stops a listener; only closing it does.
func TestAcceptErrorsDoNotStopListener(t *testing.T) {
	cli, sv := net.Pipe()
	defer cli.Close()
	ln := &flakyListener{
		errs:   []error{syscall.EMFILE, syscall.ECONNABORTED, errors.New("some other accept error")},
		conns:  []net.Conn{sv},
		closed: make(chan struct{}),
	}
	srv := NewServer(&testExports{}, Options{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	cli.SetDeadline(time.Now().Add(watchdog))
	var hello [18]byte
	if _, err := io.ReadFull(cli, hello[:]); err != nil {
		t.Fatalf("no greeting after accept errors: %v", err)
	}
	if !bytes.Equal(hello[:8], binary.BigEndian.AppendUint64(nil, nbdMagic)) {
		t.Fatalf("greeting %x", hello)
	}
	ln.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v after its listener closed, want net.ErrClosed", err)
		}
	case <-time.After(watchdog):
		t.Fatal("Serve did not return after its listener closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	cli.Close()
	srv.Shutdown(ctx)
}

func TestPeerKey(t *testing.T) {
	cases := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, ""},
	}
	for _, tc := range cases {
		if got := peerKey(tc.addr); got != tc.want {
			t.Errorf("peerKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	if got := defaultMaxConnsFor(300); got != 150 {
		t.Errorf("connection cap under 300 descriptors: %d, want 150", got)
	}
	if got := defaultMaxConnsFor(1 << 20); got != defaultMaxConns {
		t.Errorf("connection cap under 1M descriptors: %d, want %d", got, defaultMaxConns)
	}
	if got := defaultMaxConnsPerClientFor(150); got != 37 {
		t.Errorf("per-client cap under a total of 150: %d, want 37", got)
	}
	if got := defaultMaxConnsPerClientFor(defaultMaxConns); got != defaultMaxConnsPerClient {
		t.Errorf("per-client cap under the default total: %d, want %d", got, defaultMaxConnsPerClient)
	}
	if got := DefaultMemoryBytes(); got < MinMemoryBytes || got > DefaultMemoryCeiling {
		t.Errorf("default memory budget %d outside [%d, %d]", got, MinMemoryBytes, DefaultMemoryCeiling)
	}
	for _, tc := range []struct{ total, asked, want int64 }{
		{256 << 20, 0, 64 << 20},
		{64 << 20, 0, MaxPayload},
		{64 << 20, 1 << 30, 64 << 20},
	} {
		if got := connBudgetFor(tc.total, tc.asked); got != tc.want {
			t.Errorf("connBudgetFor(%d, %d) = %d, want %d", tc.total, tc.asked, got, tc.want)
		}
	}
}

// The handshake deadline covers the whole negotiation, the TLS handshake
// after NBD_OPT_STARTTLS included: a client that stops there is closed.
func TestHandshakeDeadlineCoversTLS(t *testing.T) {
	exp := &testExports{devs: map[string]*Export{"disk": {Name: "disk", Device: memdev.New(1<<20, false)}}}
	cert := selfSigned(t, "server")
	srv := NewServer(exp, Options{HandshakeTimeout: time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}})
	sock := t.TempDir() + "/nbd.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), watchdog)
		defer cancel()
		srv.Shutdown(ctx)
	})
	s := &testServer{srv: srv, sock: sock}

	t.Run("SilentAfterGreeting", func(t *testing.T) {
		r := dialRaw(t, s)
		if !closedBeforeWatchdog(r) {
			t.Fatal("a client that never sent its flags was kept past the handshake deadline")
		}
	})
	t.Run("SilentInTLSHandshake", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Option(optStartTLS, nil)
		if typ, _ := r.OptReply(optStartTLS); typ != repAck {
			t.Fatalf("STARTTLS: %#x", typ)
		}
		r.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
		if !closedBeforeWatchdog(r) {
			t.Fatal("a client stalled in the TLS handshake was kept past the handshake deadline")
		}
	})
}

// closedBeforeWatchdog reports whether the server ends the connection
// before the watchdog, discarding what it sends first.
func closedBeforeWatchdog(r *rawConn) bool {
	r.NC.SetReadDeadline(time.Now().Add(watchdog))
	_, err := io.Copy(io.Discard, r.BR)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
