package fence

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// holdDev is a device whose writes wait on hold once started is signalled:
// a request of an old session caught in flight.
type holdDev struct {
	blockdev.Device
	started chan struct{}
	hold    chan struct{}
}

func (d *holdDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	if d.hold != nil {
		d.started <- struct{}{}
		<-d.hold
	}
	return d.Device.WriteAt(ctx, p, off, f)
}

func TestOpenOrder(t *testing.T) {
	ctx := t.Context()
	f := New(time.Second)
	if _, err := f.Open(ctx, 0); !errors.Is(err, ErrStale) {
		t.Fatalf("epoch 0: %v, want ErrStale", err)
	}
	h5, err := f.Open(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	h5b, err := f.Open(ctx, 5) // a second connection of the same session
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(ctx, 4); !errors.Is(err, ErrStale) {
		t.Fatalf("older epoch: %v, want ErrStale", err)
	}
	// Epoch 6 waits for both handles of 5; they are told to end.
	done := make(chan error, 1)
	go func() {
		h, err := f.Open(ctx, 6)
		if err == nil {
			h.Close()
		}
		done <- err
	}()
	<-h5.Ended()
	<-h5b.Ended()
	if err := h5.Enter(); !errors.Is(err, ErrFenced) {
		t.Fatalf("enter of a fenced session: %v, want ErrFenced", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Open(6) returned %v while handles of 5 were open", err)
	default:
	}
	h5.Close()
	h5b.Close()
	if err := <-done; err != nil {
		t.Fatalf("Open(6): %v", err)
	}
	if _, err := f.Open(ctx, 5); !errors.Is(err, ErrStale) {
		t.Fatalf("reopen of a fenced epoch: %v, want ErrStale", err)
	}
}

// TestFenceWaitsForInflightWrite is the replica's side of the link-cut
// divergence: a write of the old session is in flight when the new
// session opens. Open returns only after it completed; the new session's
// resync then overwrites it, and a later write of the old session is
// refused: the device ends holding what the new session wrote.
func TestFenceWaitsForInflightWrite(t *testing.T) {
	ctx := t.Context()
	mem := memdev.New(1<<20, false)
	hd := &holdDev{Device: mem, started: make(chan struct{}), hold: make(chan struct{})}
	f := New(time.Minute)
	h1, _ := f.Open(ctx, 1)
	old := NewDevice(hd, h1, false)
	stale := bytes.Repeat([]byte{0xaa}, 4096)
	wrote := make(chan error, 1)
	go func() { wrote <- old.WriteAt(ctx, stale, 0, 0) }()
	<-hd.started

	opened := make(chan error, 1)
	var h2 *Handle
	go func() {
		var err error
		h2, err = f.Open(ctx, 2)
		opened <- err
	}()
	<-h1.Ended()
	select {
	case err := <-opened:
		t.Fatalf("Open(2) returned %v while a write of epoch 1 was in flight", err)
	default:
	}
	close(hd.hold) // the held write lands now, before the fence completes
	if err := <-wrote; err != nil {
		t.Fatalf("the in-flight write: %v", err)
	}
	h1.Close()
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	hd.hold = nil
	fresh := bytes.Repeat([]byte{0x55}, 4096)
	if err := NewDevice(hd, h2, false).WriteAt(ctx, fresh, 0, 0); err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func() error{
		"write":  func() error { return old.WriteAt(ctx, stale, 0, 0) },
		"zeroes": func() error { return old.WriteZeroes(ctx, 0, 4096, 0) },
		"trim":   func() error { return old.Trim(ctx, 0, 4096, 0) },
		"flush":  func() error { return old.Flush(ctx) },
	} {
		if err := fn(); !errors.Is(err, ErrFenced) {
			t.Errorf("%s of the fenced session: %v, want ErrFenced", name, err)
		}
	}
	got := make([]byte, 4096)
	if err := mem.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fresh) {
		t.Fatalf("the device holds %#x..., want the new session's %#x", got[0], fresh[0])
	}
}

func TestOpenTimeout(t *testing.T) {
	ctx := t.Context()
	f := New(20 * time.Millisecond)
	h1, _ := f.Open(ctx, 1)
	if err := h1.Enter(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(ctx, 2); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Open with a stuck request: %v, want ErrTimeout", err)
	}
	// The old session stays fenced; once its request ends, a retry opens.
	if err := h1.Enter(); !errors.Is(err, ErrFenced) {
		t.Fatalf("after a timed-out fence: %v, want ErrFenced", err)
	}
	h1.Leave()
	h1.Close()
	if _, err := f.Open(ctx, 2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Open(cctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Open with a handle of 2 open: %v", err)
	}
}

func TestSeal(t *testing.T) {
	ctx := t.Context()
	f := New(time.Second)
	h, _ := f.Open(ctx, 1)
	if err := f.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	<-h.Ended()
	if err := h.Enter(); !errors.Is(err, ErrFenced) {
		t.Fatalf("enter after Seal: %v", err)
	}
	if _, err := f.Open(ctx, 9); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open after Seal: %v", err)
	}
	f.Unseal()
	h.Close()
	if _, err := f.Open(ctx, 9); err != nil {
		t.Fatalf("Open after Unseal: %v", err)
	}
}
