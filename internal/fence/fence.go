package fence

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Fence admits the write-like requests of one session at a time (package
// doc). The zero value is not usable: call New.
type Fence struct {
	timeout time.Duration

	mu      sync.Mutex               // guards every field below
	epoch   uint64                   // the newest session admitted (0: none yet)
	sealed  bool                     // Seal: every session refused
	active  map[uint64]int           // admitted requests in flight, per epoch
	handles map[uint64]int           // open handles, per epoch
	ended   map[uint64]chan struct{} // per live epoch; closed when it is fenced
	changed chan struct{}            // closed and replaced when a request or handle ends
}

// New returns a fence whose Open and Seal wait at most timeout for older
// sessions to end.
func New(timeout time.Duration) *Fence {
	return &Fence{timeout: timeout, active: map[uint64]int{}, handles: map[uint64]int{},
		ended: map[uint64]chan struct{}{}, changed: make(chan struct{})}
}

// Epoch is the newest session the fence admitted.
func (f *Fence) Epoch() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

// Handle is one connection of a session. Close it exactly when the
// connection ends (it is safe to call more than once).
type Handle struct {
	f     *Fence
	epoch uint64
	once  sync.Once
	ended <-chan struct{}
}

// Open admits a connection of session epoch (see the package doc). It
// returns once no request or handle of an older session is left, or fails
// with ErrStale, ErrSealed, ErrTimeout or ctx's error. epoch 0 is never
// admitted (ErrStale): every real session has a larger one.
func (f *Fence) Open(ctx context.Context, epoch uint64) (*Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.admissibleLocked(epoch); err != nil {
		return nil, err
	}
	if epoch > f.epoch {
		f.epoch = epoch
		f.endOlderLocked(epoch)
	}
	if err := f.waitLocked(ctx, func() bool { return f.busyBelowLocked(epoch) }, func() error { return f.admissibleLocked(epoch) }); err != nil {
		return nil, err
	}
	f.handles[epoch]++
	ch, ok := f.ended[epoch]
	if !ok {
		ch = make(chan struct{})
		f.ended[epoch] = ch
	}
	return &Handle{f: f, epoch: epoch, ended: ch}, nil
}

// admissibleLocked says why epoch may not open, if it may not.
func (f *Fence) admissibleLocked(epoch uint64) error {
	switch {
	case f.sealed:
		return ErrSealed
	case epoch == 0 || epoch < f.epoch:
		return fmt.Errorf("epoch %d, current %d: %w", epoch, f.epoch, ErrStale)
	}
	return nil
}

// endOlderLocked tells every session older than epoch to end.
func (f *Fence) endOlderLocked(epoch uint64) {
	for e, ch := range f.ended {
		if e < epoch {
			close(ch)
			delete(f.ended, e)
		}
	}
}

// busyBelowLocked reports whether a session older than epoch still has a
// request in flight or an open handle.
func (f *Fence) busyBelowLocked(epoch uint64) bool {
	for e, n := range f.active {
		if e < epoch && n > 0 {
			return true
		}
	}
	for e, n := range f.handles {
		if e < epoch && n > 0 {
			return true
		}
	}
	return false
}

// waitLocked waits, releasing f.mu while it sleeps, until busy is false;
// after every wake-up still checks that the wait may go on. It gives up
// at the fence's deadline (ErrTimeout) or when ctx ends.
func (f *Fence) waitLocked(ctx context.Context, busy func() bool, still func() error) error {
	if !busy() {
		return nil
	}
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	for busy() {
		ch := f.changed
		f.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-timer.C:
			err = fmt.Errorf("after %v: %w", f.timeout, ErrTimeout)
		case <-ctx.Done():
			err = ctx.Err()
		}
		f.mu.Lock()
		if err == nil {
			err = still()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// signalLocked wakes every waiter.
func (f *Fence) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Seal fences every session and refuses every later Open, then waits (at
// most the fence's timeout, or until ctx ends) for every admitted request
// to end. Open handles are not waited for: their requests are refused.
// On an error the fence stays sealed; Unseal if the caller gives up.
func (f *Fence) Seal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sealed = true
	for e, ch := range f.ended {
		close(ch)
		delete(f.ended, e)
	}
	busy := func() bool {
		for _, n := range f.active {
			if n > 0 {
				return true
			}
		}
		return false
	}
	return f.waitLocked(ctx, busy, func() error { return nil })
}

// Unseal lets sessions newer than every one fenced so far open again.
func (f *Fence) Unseal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sealed = false
}

// Ended is closed when a newer session (or Seal) fenced h's session: the
// connection should be closed.
func (h *Handle) Ended() <-chan struct{} { return h.ended }

// Epoch is h's session.
func (h *Handle) Epoch() uint64 { return h.epoch }

// Enter admits one write-like request of h's session; Leave must follow
// when it completed. It fails with ErrFenced once a newer session opened
// or the fence was sealed.
func (h *Handle) Enter() error {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sealed || h.epoch != f.epoch {
		return fmt.Errorf("epoch %d, current %d: %w", h.epoch, f.epoch, ErrFenced)
	}
	f.active[h.epoch]++
	return nil
}

// Leave ends a request Enter admitted.
func (h *Handle) Leave() {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active[h.epoch]--; f.active[h.epoch] <= 0 {
		delete(f.active, h.epoch)
	}
	f.signalLocked()
}

// Close ends the handle: its connection is gone.
func (h *Handle) Close() {
	h.once.Do(func() {
		f := h.f
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.handles[h.epoch]--; f.handles[h.epoch] <= 0 {
			delete(f.handles, h.epoch)
		}
		f.signalLocked()
	})
}
