package mirror

import (
	"context"
	"fmt"

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
	return f.m.write(ctx, op{name: "write", off: off, n: int64(len(p)), fua: flags&blockdev.FUA != 0,
		local: func(ctx context.Context) error { return f.next.WriteAt(ctx, p, off, flags) },
		remote: func(ctx context.Context, t deviceWriter) error {
			return t.WriteAt(ctx, p, off, flags&blockdev.FUA)
		}})
}

// WriteZeroes zeroes both sides; the replica is asked without FastZero
// (the local side decides whether the request is fast).
func (f *Filter) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return f.m.write(ctx, op{name: "write zeroes", off: off, n: n, fua: flags&blockdev.FUA != 0,
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
// local side holds afterwards. It is no divergence (package doc, "Trims").
func (f *Filter) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return f.m.write(ctx, op{name: "trim", off: off, n: n, fua: flags&blockdev.FUA != 0,
		local: func(ctx context.Context) error { return f.next.Trim(ctx, off, n, flags) }})
}

// Flush makes completed writes durable on the volume and, as the policy
// says, on the replica (flushReplica); the two run side by side.
func (f *Filter) Flush(ctx context.Context) error {
	lerrc := make(chan error, 1)
	go func() { lerrc <- f.next.Flush(ctx) }()
	rerr := f.m.flushReplica(ctx)
	if lerr := <-lerrc; lerr != nil {
		return lerr
	}
	return rerr
}

func (f *Filter) Close() error { return f.next.Close() }

// flushReplica makes every write acknowledged before the call durable on
// the replica, or records (policy degrade) that the replica lacks it.
//
//   - Before the first full sync, or released: the connected replica, if
//     any, is flushed; nothing is promised.
//   - Policy block (not paused): it waits until no chunk is owed (dirty
//     or being copied with a write the replica lacks; a chunk dirty only
//     from a trim is not waited for) and a replica is connected, then
//     flushes that connection. A write acknowledged before the call is
//     then on that connection (a
//     write whose connection dropped since had its chunks marked dirty and
//     copied again), so the flush covers it. A failed flush drops the
//     replica and the wait starts again. The wait ends as waitLocked says
//     (close, daemon stop, ctx): the flush then fails.
//   - Policy degrade, or paused: if the replica is connected with nothing
//     owed, it is flushed; if it is not, or the flush fails, and chunks
//     are owed (the replica lacks acknowledged writes), the divergence is
//     recorded durably (the dirty log holds the chunks, OnDegrade sets the
//     record's flag) before the flush succeeds.
func (m *Mirror) flushReplica(ctx context.Context) error {
	for {
		m.mu.Lock()
		block := m.synced && !m.released && !m.paused && m.opts.Policy == Block
		if block {
			err := m.waitLocked(ctx, true, func() bool {
				return m.paused || m.released || (m.target != nil && m.nowed == 0)
			})
			if err != nil {
				m.mu.Unlock()
				return fmt.Errorf("flush volume %s waits for the replica (policy block): %w", m.opts.Volume, err)
			}
			if m.paused || m.released {
				m.mu.Unlock()
				continue // the policy no longer holds it back
			}
		}
		t, gen := m.target, m.tgen
		clean := t != nil && m.nowed == 0
		synced, released := m.synced, m.released
		m.mu.Unlock()
		var err error
		if t != nil {
			rctx, cancel := m.remoteCtx(ctx)
			err = t.Flush(rctx)
			cancel()
			if err != nil {
				m.mu.Lock()
				m.replicaFailedLocked(gen, fmt.Errorf("flush the replica: %w", err))
				m.mu.Unlock()
			}
		}
		switch {
		case !synced || released:
			return nil
		case block && err != nil:
			continue // dropped: wait for the resync, then flush again
		case block || (clean && err == nil):
			return nil
		}
		// The replica could not be flushed, or is not there: it lacks
		// acknowledged writes exactly if chunks are owed (a dropped
		// connection marks everything the dirty log holds; a chunk dirty
		// only from a trim lacks no write).
		m.mu.Lock()
		lacks := m.nowed > 0
		m.mu.Unlock()
		if !lacks {
			return nil
		}
		if err := m.recordDivergence(); err != nil {
			return fmt.Errorf("flush volume %s: record the degraded mirror: %w", m.opts.Volume, err)
		}
		return nil
	}
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
