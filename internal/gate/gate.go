// Package gate is the top of every export's stack: a Device whose next
// device can be replaced while clients keep their connections. Snapshots,
// consolidation and migration pivot through it: Hold stops new requests
// and waits for the ones in flight, Held.Replace installs the new stack,
// Held.Release lets I/O go on against it (the engine's pivot primitive,
// internal/engine/pivot.go, is built on these; Swap does all three for one
// function). The guest sees one slow request, never an error.
package gate

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Gate forwards every call to next and can swap next under I/O.
type Gate struct {
	// mu: every I/O holds it shared for its whole duration; Swap holds it
	// exclusively. A waiting Swap blocks new I/O (sync.RWMutex semantics),
	// so a pivot waits only for the requests already in flight.
	mu   sync.RWMutex
	next blockdev.Device // guarded by mu
	size int64

	capsMu sync.Mutex    // guards caps (Caps may be called while I/O is held)
	caps   blockdev.Caps // fixed, but for MetaContexts, which follow the installed device

	stallMu   sync.Mutex    // guards lastStall
	lastStall time.Duration // how long the last Swap held I/O
}

var _ blockdev.Device = (*Gate)(nil)

// New wraps next. Size and Caps are fixed for the gate's life: a pivot
// must install a device of the same size whose caps are no narrower. The
// one exception is MetaContexts, which follow the installed device: a
// CBT bitmap enabled or removed is a pivot that changes them, and new
// NBD connections see the new list.
func New(next blockdev.Device) *Gate {
	return &Gate{next: next, size: next.Size(), caps: next.Caps()}
}

// Swap holds all I/O, calls pivot with the current device, and installs
// what it returns. If pivot fails the old device stays. It returns how
// long I/O was held.
func (g *Gate) Swap(pivot func(cur blockdev.Device) (blockdev.Device, error)) (time.Duration, error) {
	h := g.Hold()
	nd, err := pivot(h.Current())
	if err == nil && nd != nil {
		h.Replace(nd)
	}
	return h.Release(), err
}

// Held is a gate whose I/O is stopped: no request is in flight and none
// starts until Release. Consistency-group snapshots hold several gates.
type Held struct {
	g     *Gate
	start time.Time
}

// Hold stops I/O: it waits for the requests in flight and blocks new ones.
func (g *Gate) Hold() *Held {
	g.mu.Lock()
	return &Held{g: g, start: time.Now()}
}

// Current is the installed device.
func (h *Held) Current() blockdev.Device { return h.g.next }

// Replace installs dev; it takes effect when I/O resumes.
func (h *Held) Replace(dev blockdev.Device) {
	h.g.next = dev
	meta := slices.Clone(dev.Caps().MetaContexts)
	h.g.capsMu.Lock()
	h.g.caps.MetaContexts = meta
	h.g.capsMu.Unlock()
}

// Release lets I/O go on and returns how long it was held.
func (h *Held) Release() time.Duration {
	held := time.Since(h.start)
	h.g.mu.Unlock()
	h.g.stallMu.Lock()
	h.g.lastStall = held
	h.g.stallMu.Unlock()
	return held
}

// Current returns the device now installed (for inspection only).
func (g *Gate) Current() blockdev.Device {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next
}

// LastStall is how long the most recent Swap held I/O.
func (g *Gate) LastStall() time.Duration {
	g.stallMu.Lock()
	defer g.stallMu.Unlock()
	return g.lastStall
}

func (g *Gate) Size() int64 { return g.size }
func (g *Gate) Caps() blockdev.Caps {
	g.capsMu.Lock()
	defer g.capsMu.Unlock()
	c := g.caps
	c.MetaContexts = slices.Clone(c.MetaContexts)
	return c
}

func (g *Gate) ReadAt(ctx context.Context, p []byte, off int64) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.ReadAt(ctx, p, off)
}

func (g *Gate) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.WriteAt(ctx, p, off, f)
}

func (g *Gate) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.WriteZeroes(ctx, off, n, f)
}

func (g *Gate) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.Trim(ctx, off, n, f)
}

func (g *Gate) Flush(ctx context.Context) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.Flush(ctx)
}

func (g *Gate) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.next.BlockStatus(ctx, meta, off, n)
}

// Close closes the installed device.
func (g *Gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.next.Close()
}
