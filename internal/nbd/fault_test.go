package nbd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// faultDev fails writes with err (when set) and delays them by delay: a
// fake for fault injection only.
type faultDev struct {
	next  blockdev.Device
	err   atomic.Pointer[error] // nil: no fault
	delay time.Duration
}

func (f *faultDev) fail() error {
	if e := f.err.Load(); e != nil {
		return *e
	}
	return nil
}
func (f *faultDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	return f.next.ReadAt(ctx, p, off)
}
func (f *faultDev) WriteAt(ctx context.Context, p []byte, off int64, fl blockdev.WriteFlags) error {
	time.Sleep(f.delay)
	if err := f.fail(); err != nil {
		return err
	}
	return f.next.WriteAt(ctx, p, off, fl)
}
func (f *faultDev) WriteZeroes(ctx context.Context, off, n int64, fl blockdev.WriteFlags) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.next.WriteZeroes(ctx, off, n, fl)
}
func (f *faultDev) Trim(ctx context.Context, off, n int64, fl blockdev.WriteFlags) error {
	return f.next.Trim(ctx, off, n, fl)
}
func (f *faultDev) Flush(ctx context.Context) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.next.Flush(ctx)
}
func (f *faultDev) Size() int64         { return f.next.Size() }
func (f *faultDev) Caps() blockdev.Caps { return f.next.Caps() }
func (f *faultDev) BlockStatus(ctx context.Context, m string, off, n int64) ([]blockdev.Extent, error) {
	return f.next.BlockStatus(ctx, m, off, n)
}
func (f *faultDev) Close() error { return f.next.Close() }

func startFaultServer(t *testing.T, fd *faultDev) (*Server, string) {
	t.Helper()
	srv := NewServer(&testExports{devs: map[string]*Export{"f": {Name: "f", Device: fd}}}, Options{})
	sock := filepath.Join(t.TempDir(), "f.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv, "nbd+unix:///f?socket=" + sock
}

// Datastore errors reach the client as the errno they are, and the server
// stays up for the next request.
func TestDeviceErrorsReachClient(t *testing.T) {
	fd := &faultDev{next: memdev.New(16<<20, false)}
	_, uri := startFaultServer(t, fd)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("write flat: %w", blockdev.ErrNoSpace), "No space left on device"},
		{fmt.Errorf("pwrite: %w", syscall.EIO), "Input/output error"},
		{fmt.Errorf("pwrite: %w", syscall.EDQUOT), "No space left on device"},
	} {
		fd.err.Store(&tc.err)
		code, out := runStatus(t, "qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", uri)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%v: qemu-io exit %d:\n%s", tc.err, code, out)
		}
	}
	fd.err.Store(nil)
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 7 0 4k", "-c", "read -P 7 0 4k", uri)
}

// Shutdown answers every request already read before it closes.
func TestShutdownDrains(t *testing.T) {
	fd := &faultDev{next: memdev.New(16<<20, false), delay: 300 * time.Millisecond}
	srv, uri := startFaultServer(t, fd)
	sock := uri[strings.Index(uri, "socket=")+len("socket="):]
	r := dialRaw(t, &testServer{sock: sock})
	r.Open("f", false)
	for h := uint64(1); h <= 8; h++ {
		r.Request(cmdWrite, 0, h, h*4096, 4096, make([]byte, 4096))
	}
	time.Sleep(50 * time.Millisecond) // let the reader take them in
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	seen := map[uint64]bool{}
	for range 8 {
		h, e := r.SimpleReply()
		if e != 0 {
			t.Fatalf("handle %d errno %d", h, e)
		}
		seen[h] = true
	}
	if len(seen) != 8 {
		t.Fatalf("answered %v", seen)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !r.ClosedSilently() {
		t.Fatal("connection open after Shutdown")
	}
}

// Closing an export's Gone channel drops its connections at once.
func TestExportGoneDropsConnections(t *testing.T) {
	gone := make(chan struct{})
	srv := NewServer(&testExports{devs: map[string]*Export{
		"g": {Name: "g", Device: memdev.New(1<<20, false), Gone: gone},
	}}, Options{})
	sock := filepath.Join(t.TempDir(), "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	r := dialRaw(t, &testServer{sock: sock})
	r.Open("g", false)
	r.Request(cmdRead, 0, 1, 0, 512, nil)
	if _, e := r.SimpleReply(); e != 0 {
		t.Fatalf("read errno %d", e)
	}
	r.Read(make([]byte, 512))
	close(gone)
	if !r.ClosedSilently() {
		t.Fatal("connection survived its export's removal")
	}
}
