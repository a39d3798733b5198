package cbt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Tracker is the CBT filter: every write, zero and trim is recorded in
// the State's bitmaps (activity log first, bits before the request goes
// down), and each bitmap is served as the meta context
// "qemu:dirty-bitmap:NAME". It holds no state of its own, so a pivot can
// build a new Tracker over new layers with the same State.
type Tracker struct {
	next blockdev.Device
	st   *State
	size int64
	caps blockdev.Caps

	closed atomic.Bool // set by Close: the tracker's own answers fail with ErrClosed too
}

var _ blockdev.Device = (*Tracker)(nil)

// New wraps next. The Tracker serves the bitmaps the State has now; a
// bitmap added or removed later needs a new Tracker (its Caps list the
// meta contexts and are fixed, like every device's).
func New(next blockdev.Device, st *State) *Tracker {
	caps := next.Caps()
	// Not a narrowing: a filter that serves contexts adds them.
	caps.MetaContexts = slices.Clone(caps.MetaContexts)
	for _, n := range st.Names() {
		caps.MetaContexts = append(caps.MetaContexts, MetaPrefix+n)
	}
	return &Tracker{next: next, st: st, size: next.Size(), caps: caps}
}

// Next is the device below the tracker.
func (t *Tracker) Next() blockdev.Device { return t.next }

func (t *Tracker) Size() int64 { return t.size }
func (t *Tracker) Caps() blockdev.Caps {
	c := t.caps
	c.MetaContexts = slices.Clone(c.MetaContexts)
	return c
}

func (t *Tracker) ReadAt(ctx context.Context, p []byte, off int64) error {
	return t.next.ReadAt(ctx, p, off)
}

func (t *Tracker) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	done, err := t.begin("write", off, int64(len(p)))
	if err != nil {
		return err
	}
	defer done()
	return t.next.WriteAt(ctx, p, off, flags)
}

func (t *Tracker) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	done, err := t.begin("write zeroes", off, n)
	if err != nil {
		return err
	}
	defer done()
	return t.next.WriteZeroes(ctx, off, n, flags)
}

func (t *Tracker) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	done, err := t.begin("trim", off, n)
	if err != nil {
		return err
	}
	defer done()
	return t.next.Trim(ctx, off, n, flags)
}

// begin records a change of [off, off+n) before it is passed down. A
// request the device will refuse anyway (bad range, read-only, empty) is
// not recorded; the device below gives the error.
func (t *Tracker) begin(op string, off, n int64) (func(), error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, blockdev.ErrClosed)
	}
	if n == 0 || t.caps.ReadOnly || blockdev.CheckRange(t.size, t.caps.MinBlock, off, n) != nil {
		return noop, nil
	}
	done, err := t.st.begin(off, n)
	if err != nil {
		return nil, fmt.Errorf("track %s [%d, +%d): %w", op, off, n, err)
	}
	return done, nil
}

func (t *Tracker) Flush(ctx context.Context) error { return t.next.Flush(ctx) }

func (t *Tracker) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	name, ok := strings.CutPrefix(meta, MetaPrefix)
	if !ok || !slices.Contains(t.caps.MetaContexts, meta) {
		return t.next.BlockStatus(ctx, meta, off, n)
	}
	if t.closed.Load() {
		return nil, fmt.Errorf("block status %s: %w", meta, blockdev.ErrClosed)
	}
	if err := blockdev.CheckRange(t.size, t.caps.MinBlock, off, n); err != nil {
		return nil, err
	}
	ext, err := t.st.Extents(name, off, n)
	if errors.Is(err, ErrBitmapNotFound) {
		return nil, fmt.Errorf("%w: %w", blockdev.ErrUnknownContext, err)
	}
	return ext, err
}

// Close closes the device below; the State lives on with the volume.
func (t *Tracker) Close() error {
	t.closed.Store(true)
	return t.next.Close()
}
