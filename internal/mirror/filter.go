package mirror

import (
	"context"
	"fmt"
	"sync"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Filter is the mirror's place in a stack: reads go to next, writes to
// next and the replica (Mirror.write).
type Filter struct {
	next blockdev.Device
	m    *Mirror
}

var _ blockdev.Device = (*Filter)(nil)

func (f *Filter) Size() int64         { return f.next.Size() }
func (f *Filter) Caps() blockdev.Caps { return f.next.Caps() }

// Next is the device below (tests and pivots).
func (f *Filter) Next() blockdev.Device { return f.next }

func (f *Filter) ReadAt(ctx context.Context, p []byte, off int64) error {
	return f.next.ReadAt(ctx, p, off)
}

func (f *Filter) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	return f.next.BlockStatus(ctx, meta, off, n)
}

func (f *Filter) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	return f.m.write(ctx, op{name: "write", off: off, n: int64(len(p)),
		local: func(ctx context.Context) error { return f.next.WriteAt(ctx, p, off, flags) },
		remote: func(ctx context.Context, t deviceWriter) error {
			return t.WriteAt(ctx, p, off, flags&blockdev.FUA)
		}})
}

// WriteZeroes zeroes both sides; the replica is asked without FastZero
// (the local side decides whether the request is fast).
func (f *Filter) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return f.m.write(ctx, op{name: "write zeroes", off: off, n: n,
		local: func(ctx context.Context) error { return f.next.WriteZeroes(ctx, off, n, flags) },
		remote: func(ctx context.Context, t deviceWriter) error {
			rf := flags &^ blockdev.FastZero
			if !t.Caps().Zero {
				return writeZeroBuf(ctx, t, off, n, rf)
			}
			return t.WriteZeroes(ctx, off, n, rf)
		}})
}

// Trim is not sent as such: what a trimmed range reads back depends on
// the layers, so its chunks are marked and the copier sends what the
// local side holds afterwards.
func (f *Filter) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return f.m.write(ctx, op{name: "trim", off: off, n: n,
		local: func(ctx context.Context) error { return f.next.Trim(ctx, off, n, flags) }})
}

// Flush makes completed writes durable on both sides. A replica that
// fails the flush is dropped and everything it may not have made durable
// is resynced; the flush then succeeds or waits as the policy says.
func (f *Filter) Flush(ctx context.Context) error {
	m := f.m
	m.mu.Lock()
	t, gen := m.target, m.tgen
	m.mu.Unlock()
	var wg sync.WaitGroup
	var rerr error
	if t != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := m.remoteCtx(ctx)
			defer cancel()
			rerr = t.Flush(rctx)
		}()
	}
	lerr := f.next.Flush(ctx)
	wg.Wait()
	if rerr != nil {
		m.mu.Lock()
		m.replicaFailedLocked(gen, fmt.Errorf("flush the replica: %w", rerr))
		m.mu.Unlock()
	}
	if lerr != nil {
		return lerr
	}
	if rerr == nil && t != nil {
		return nil
	}
	return m.settleFlush(ctx)
}

func (f *Filter) Close() error { return f.next.Close() }

// settleFlush: a flush the replica did not complete. Before the first
// sync, paused or policy degrade: done (the journal holds what the replica
// lacks). Policy block: wait until the replica is back in sync.
func (m *Mirror) settleFlush(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced || m.paused || m.opts.Policy != Block {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	for m.state != StateInSync && !m.paused {
		if m.closed {
			return fmt.Errorf("flush volume %s: %w", m.opts.Volume, ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flush volume %s waits for the replica (policy block): %w", m.opts.Volume, err)
		}
		m.cond.Wait()
	}
	return nil
}

// writeZeroBuf zeroes with plain writes, for a replica without WRITE_ZEROES.
func writeZeroBuf(ctx context.Context, t blockdev.Device, off, n int64, flags blockdev.WriteFlags) error {
	step := min(n, 1<<20)
	z := make([]byte, step)
	for n > 0 {
		k := min(n, step)
		if err := t.WriteAt(ctx, z[:k], off, flags); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
