package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/replication"
)

// waitsWatchdog bounds waits that must end (a hang detector, not a timing
// assertion).
const waitsWatchdog = 60 * time.Second

// hungTarget is an in-process NBD server whose device, once hung, never
// answers a write or flush (a stopped process): only the client's request
// timeout ends them.
type hungTarget struct {
	dev     *memdev.Device
	hung    atomic.Bool
	release chan struct{}
	once    sync.Once
	sock    string
}

func startHungTarget(t *testing.T, size int64) *hungTarget {
	t.Helper()
	h := &hungTarget{dev: memdev.New(size, false), release: make(chan struct{}), sock: filepath.Join(t.TempDir(), "t.sock")}
	ln, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(h, nbd.Options{})
	go srv.Serve(ln)
	t.Cleanup(func() {
		h.unhang()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return h
}

func (h *hungTarget) uri() string { return "nbd+unix:///?socket=" + h.sock }
func (h *hungTarget) unhang()     { h.once.Do(func() { close(h.release) }) }

// OpenExport hangs too while hung: a stopped process completes no
// handshake, so the mirror's reconnects time out.
func (h *hungTarget) OpenExport(ctx context.Context, name string) (*nbd.Export, func(), error) {
	if h.hung.Load() {
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return &nbd.Export{Name: name, Device: &hungDev{Device: h.dev, h: h}}, func() {}, nil
}
func (h *hungTarget) ListExports(ctx context.Context) []string { return []string{""} }

// hungDev is a pure decorator for fault injection (embedding is fine).
type hungDev struct {
	blockdev.Device
	h *hungTarget
}

func (d *hungDev) wait() {
	if d.h.hung.Load() {
		<-d.h.release
	}
}
func (d *hungDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.wait()
	return d.Device.WriteAt(ctx, p, off, f)
}
func (d *hungDev) Flush(ctx context.Context) error {
	d.wait()
	return d.Device.Flush(ctx)
}

// blockedWrite mirrors volume v (policy block) to a target that then
// hangs, and starts a write that the policy holds back. It returns the
// write's result channel once the mirror noticed the target is gone.
func blockedWrite(t *testing.T, e *Engine) (*hungTarget, <-chan error) {
	t.Helper()
	const size = 4 << 20
	h := startHungTarget(t, size)
	mustCreate(t, e, CreateOptions{Name: "v", Size: size})
	if _, err := e.CreateMirror(t.Context(), apischema.MirrorOptions{Volume: "v", Target: h.uri(), Policy: "block"}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, e, "v", mirror.StateInSync)
	h.hung.Store(true)
	ex, release, err := e.OpenExport(t.Context(), "v")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer release()
		done <- ex.Device.WriteAt(context.Background(), bytes.Repeat([]byte{0x5A}, 4096), 1<<20, 0)
	}()
	waitMirror(t, e, "v", mirror.StateDegraded) // after the request timeout
	select {
	case err := <-done:
		t.Fatalf("policy block: the write returned (%v) while the target hung", err)
	default:
	}
	return h, done
}

func waitWrite(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitsWatchdog):
		t.Fatalf("%s: the held-back write still waits after %v", what, waitsWatchdog)
		return nil
	}
}

// mirror rm while the block policy holds a write back for a hung target:
// rm returns, the write is acknowledged (it is on the volume; no replica
// is required any more), and nothing is left of the mirror.
func TestMirrorRemoveWithBlockedWrite(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	_, done := blockedWrite(t, e)
	rm := make(chan error, 1)
	go func() { rm <- e.RemoveMirror(t.Context(), "v") }()
	if err := waitWrite(t, rm, "mirror rm"); err != nil {
		t.Fatal(err)
	}
	if err := waitWrite(t, done, "after mirror rm"); err != nil {
		t.Fatalf("after mirror rm: %v, want the write acknowledged", err)
	}
	if got := readThrough(t, e, "v", 4096, 1<<20); got[0] != 0x5A {
		t.Fatal("the acknowledged write is not on the volume")
	}
	if recs, _ := e.cat.Mirrors(); len(recs) != 0 {
		t.Fatalf("after mirror rm the catalog holds %+v", recs)
	}
}

// mirror pause acknowledges the held-back write after recording the
// divergence (the record's flag is set when the write returns).
func TestMirrorPauseWithBlockedWrite(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	_, done := blockedWrite(t, e)
	if _, err := e.PauseMirror(t.Context(), "v"); err != nil {
		t.Fatal(err)
	}
	if err := waitWrite(t, done, "after mirror pause"); err != nil {
		t.Fatalf("after mirror pause: %v, want the write acknowledged", err)
	}
	recs, err := e.cat.Mirrors()
	if err != nil || len(recs) != 1 || !recs[0].Diverged || !recs[0].Paused {
		t.Fatalf("after a write acknowledged while paused the record is %+v (%v), want paused and diverged", recs, err)
	}
}

// A daemon stop with a held-back write: StopMirrorWaits fails it (EIO to
// an NBD client), and Close returns. The write's chunk is in the dirty log
// (the next start resends it).
func TestMirrorStopWithBlockedWrite(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	_, done := blockedWrite(t, e)
	e.StopMirrorWaits()
	if err := waitWrite(t, done, "after StopMirrorWaits"); !errors.Is(err, mirror.ErrStopping) {
		t.Fatalf("after StopMirrorWaits: %v, want ErrStopping", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	if err := waitWrite(t, closed, "engine close"); err != nil {
		t.Fatalf("close: %v", err)
	}
	e = openEngine(t, dir)
	defer e.Close()
	e.mu.Lock()
	st := e.volumes["v"].cbt
	e.mu.Unlock()
	rs, err := st.Ranges(replication.MirrorBitmap)
	if err != nil {
		t.Fatal(err)
	}
	covered := false
	for _, r := range rs {
		covered = covered || (r.Off <= 1<<20 && r.Off+r.Len >= 1<<20+4096)
	}
	if !covered {
		t.Fatalf("after the stop the dirty log holds %v, not the failed write at 1 MiB", rs)
	}
}
