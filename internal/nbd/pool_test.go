package nbd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// countingDevice counts Flush calls and can hide multi-conn.
type countingDevice struct {
	blockdev.Device
	noMultiConn bool
	flushes     atomic.Int64
}

func (d *countingDevice) Flush(ctx context.Context) error {
	d.flushes.Add(1)
	return d.Device.Flush(ctx)
}

func (d *countingDevice) Caps() blockdev.Caps {
	c := d.Device.Caps()
	if d.noMultiConn {
		c.MultiConn = false // the test server then must not advertise it
	}
	return c
}

// servePool serves dev as export "d" on a unix socket and dials a pool of n.
func servePool(t *testing.T, dev blockdev.Device, ro bool, n int) (*Server, *Pool) {
	t.Helper()
	srv := NewServer(&testExports{devs: map[string]*Export{"d": {Name: "d", Device: dev, ReadOnly: ro}}}, Options{})
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	p, err := DialPool(t.Context(), Target{Network: "unix", Address: sock, Export: "d"},
		ClientOptions{MetaContexts: []string{blockdev.MetaBaseAllocation}}, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return srv, p
}

// A pool is a Device: it passes the conformance suite through the server.
func TestPoolConformance(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		_, p := servePool(t, memdev.New(size, false), false, 4)
		return p
	}, devtest.Options{
		OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
			m := memdev.New(int64(len(content)), false)
			if err := m.WriteAt(t.Context(), content, 0, 0); err != nil {
				t.Fatal(err)
			}
			_, p := servePool(t, m, true, 4)
			return p
		},
	})
}

func TestPoolConnsFollowMultiConn(t *testing.T) {
	for _, tc := range []struct {
		name        string
		noMultiConn bool
		n, want     int
	}{
		{"MultiConn", false, 4, 4},
		{"MultiConnOne", false, 1, 1},
		{"MultiConnZero", false, 0, 1},
		{"NoMultiConn", true, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, p := servePool(t, &countingDevice{Device: memdev.New(1<<20, false), noMultiConn: tc.noMultiConn}, false, tc.n)
			if got, want := p.Conns(), tc.want; got != want {
				t.Fatalf("Conns: got %d, want %d", got, want)
			}
			if got, want := p.Caps().MultiConn, !tc.noMultiConn; got != want {
				t.Errorf("Caps().MultiConn: got %v, want %v", got, want)
			}
			// One request on each connection: the server has counted a
			// connection once it has answered on it.
			for _, pc := range p.conns {
				if err := pc.c.ReadAt(t.Context(), make([]byte, 512), 0); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := srv.Connections("d"), tc.want; got != want {
				t.Errorf("server connections: got %d, want %d", got, want)
			}
		})
	}
}

// Concurrent writes spread over the connections all land; one Flush
// reaches the device once.
func TestPoolWritesAndFlush(t *testing.T) {
	disk := memdev.New(16<<20, false)
	dev := &countingDevice{Device: disk}
	_, p := servePool(t, dev, false, 4)
	want := make([]byte, 16<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for k := range 8 {
				off := int64(g*8+k) * 256 << 10
				b := bytes.Repeat([]byte{byte(g*8 + k + 1)}, 256<<10)
				copy(want[off:], b)
				if err := p.WriteAt(t.Context(), b, off, 0); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, pc := range p.conns {
		if pc.load.Load() != 0 {
			t.Errorf("load %d left on a connection", pc.load.Load())
		}
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := dev.flushes.Load(), int64(1); got != want {
		t.Errorf("device flushes: got %d, want %d", got, want)
	}
	got := make([]byte, len(want))
	if err := disk.ReadAt(t.Context(), got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("device content differs from what was written through the pool")
	}
	clear(got)
	if err := p.ReadAt(t.Context(), got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back through the pool: %v (equal %v)", err, bytes.Equal(got, want))
	}
}

// Least-loaded picking spreads concurrent calls over every connection.
func TestPoolPickSpreads(t *testing.T) {
	_, p := servePool(t, memdev.New(1<<20, false), false, 4)
	seen := map[int]bool{}
	var held []*poolConn
	for range 4 {
		i, pc := p.pick()
		pc.load.Add(1) // as if a request were in flight
		held = append(held, pc)
		seen[i] = true
	}
	if got, want := len(seen), 4; got != want {
		t.Errorf("4 concurrent picks used %d connections, want %d", got, want)
	}
	for _, pc := range held {
		pc.load.Add(-1)
	}
}

// Losing one connection fails the whole pool: every later call returns the
// same error, naming the connection and wrapping ErrPoolFailed.
func TestPoolFailsWithOneConnection(t *testing.T) {
	_, p := servePool(t, memdev.New(8<<20, false), false, 4)
	ctx := t.Context()
	// Writers keep every connection busy while one is cut underneath.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			b := bytes.Repeat([]byte{byte(g)}, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := p.WriteAt(ctx, b, int64(g)<<20, 0); err != nil {
					if !errors.Is(err, ErrPoolFailed) {
						t.Errorf("writer: got %v, want ErrPoolFailed", err)
					}
					return
				}
			}
		})
	}
	p.conns[1].c.nc.Close()
	<-p.Done()
	close(stop)
	wg.Wait()

	perr := p.Err()
	if !errors.Is(perr, ErrPoolFailed) || !strings.Contains(perr.Error(), "connection 2 of 4") {
		t.Fatalf("Err: got %v, want ErrPoolFailed naming connection 2 of 4", perr)
	}
	ops := map[string]func() error{
		"ReadAt":      func() error { return p.ReadAt(ctx, make([]byte, 512), 0) },
		"WriteAt":     func() error { return p.WriteAt(ctx, make([]byte, 512), 0, 0) },
		"WriteZeroes": func() error { return p.WriteZeroes(ctx, 0, 512, 0) },
		"Trim":        func() error { return p.Trim(ctx, 0, 512, 0) },
		"Flush":       func() error { return p.Flush(ctx) },
		"BlockStatus": func() error { _, err := p.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, 512); return err },
	}
	for name, op := range ops {
		for range 4 { // whichever connection would be picked
			if err := op(); err != perr {
				t.Errorf("%s after failure: got %v, want the pool's error", name, err)
			}
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close of a failed pool: %v", err)
	}
	if err := p.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
}

// The server going away fails the pool too, and a request error that
// leaves the connection alive does not.
func TestPoolServerGoneAndRequestErrors(t *testing.T) {
	srv, p := servePool(t, memdev.New(1<<20, true), true, 3)
	if err := p.WriteAt(t.Context(), make([]byte, 512), 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("write to a read-only export: %v", err)
	}
	if err := p.ReadAt(t.Context(), make([]byte, 512), 2<<20); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("request errors failed the pool: %v", err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.ReadAt(t.Context(), make([]byte, 512), 0); !errors.Is(err, ErrPoolFailed) {
		t.Errorf("after the server left: got %v, want ErrPoolFailed", err)
	}
}

// A pool over TLS: every connection does STARTTLS with the client cert,
// and the server's Exports sees the peer on each.
func TestPoolTLS(t *testing.T) {
	f := startPeerServer(t)
	p, err := DialPool(t.Context(), Target{Network: "tcp", Address: f.tcp, Export: "d", TLS: true},
		ClientOptions{TLS: f.clientTLS()}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, want := p.Conns(), 3; got != want {
		t.Fatalf("Conns: got %d, want %d", got, want)
	}
	seen := f.exp.seen()
	if got, want := len(seen), 3; got != want {
		t.Fatalf("OpenExport calls: got %d, want %d", got, want)
	}
	for i, cs := range seen {
		if cs == nil || len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, f.clientCert.Leaf.Raw) {
			t.Errorf("connection %d: OpenExport did not see the client certificate", i+1)
		}
	}
	if err := p.WriteAt(t.Context(), []byte("tls"), 0, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
}

func TestDialPoolRefused(t *testing.T) {
	f := startPeerServer(t)
	_, err := DialPool(t.Context(), Target{Network: "unix", Address: f.sock, Export: "vm1"}, ClientOptions{}, 4)
	var re *ReplyError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, refusal) {
		t.Fatalf("got %v, want the refusal", err)
	}
}
