package mirror

import (
	"context"
	"errors"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// op is one write-like request: what it does locally and on the replica.
// remote nil means the replica gets no request (trim): the chunks are
// marked dirty but not owed, and the copier sends what the local layers
// then hold. Such a request is acknowledged as soon as the local layers
// completed it: after a trim the range's content is unspecified, so a
// replica that still holds the old bytes lacks no acknowledged write.
type op struct {
	name   string
	off, n int64
	fua    bool // durable on return: on the replica too, where the policy requires it
	local  func(ctx context.Context) error
	remote func(ctx context.Context, t deviceWriter) error
}

// write runs one request under the per-chunk protocol (package doc).
func (m *Mirror) write(ctx context.Context, o op) error {
	if o.n <= 0 {
		return o.local(ctx)
	}
	if o.off < 0 || o.off > m.opts.Size-o.n {
		return o.local(ctx) // the layers answer ErrOutOfRange
	}
	fc, lc := o.off/ChunkSize, (o.off+o.n-1)/ChunkSize
	m.mu.Lock()
	// The copy of a chunk and an overlapping write each end within the
	// replica timeout; the wait also ends with ctx or Close.
	if err := m.waitLocked(ctx, false, func() bool { return !m.copyingAnyLocked(fc, lc) && !m.overlapsLocked(o.off, o.n) }); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("%s at %d+%d on volume %s: %w", o.name, o.off, o.n, m.opts.Volume, err)
	}
	t, gen := m.target, m.tgen
	// A chunk dirty only from a trim does not stop a write through: the
	// write reaches the replica now, and the copy of the chunk, which
	// waits for it (writers), sends it again with the rest.
	through := t != nil && o.remote != nil && !m.anyOwedLocked(fc, lc)
	if !through {
		m.markChunksLocked(fc, lc, o.remote != nil)
		m.setStateLocked()
	}
	for c := fc; c <= lc; c++ {
		m.writers[c]++
	}
	m.wseq++
	id := m.wseq
	m.inflight[id] = blockdev.Range{Off: o.off, Len: o.n}
	m.mu.Unlock()

	var lerr, rerr error
	if through {
		done := make(chan error, 1)
		go func() {
			rctx, cancel := m.remoteCtx(ctx)
			defer cancel()
			done <- o.remote(rctx, t)
		}()
		lerr = o.local(ctx)
		rerr = <-done
		if rerr == nil {
			m.sent.Add(o.n)
			m.through.Add(1)
		}
	} else {
		lerr = o.local(ctx)
	}

	m.mu.Lock()
	delete(m.inflight, id)
	for c := fc; c <= lc; c++ {
		if m.writers[c]--; m.writers[c] <= 0 {
			delete(m.writers, c)
		}
	}
	m.cond.Broadcast()
	if through && rerr != nil {
		m.markChunksLocked(fc, lc, true)
		m.replicaFailedLocked(gen, fmt.Errorf("%s at %d+%d on the replica: %w", o.name, o.off, o.n, rerr))
	}
	if lerr != nil {
		took := through && rerr == nil
		if took {
			// The replica took what the local layers did not (a local
			// error, or a cancelled caller: the replica's request does not
			// share its cancellation): the chunks differ until copied.
			m.markChunksLocked(fc, lc, true)
			m.setStateLocked()
			m.cond.Broadcast()
		}
		m.mu.Unlock()
		if took && m.opts.DirtyLog != nil {
			if err := m.opts.DirtyLog.Mark(fc*ChunkSize, (lc-fc+1)*ChunkSize); err != nil {
				return fmt.Errorf("%w; and record what the replica holds in excess on volume %s: %w", lerr, m.opts.Volume, err)
			}
		}
		return lerr
	}
	owes := o.remote != nil && (!through || rerr != nil)
	m.mu.Unlock()
	if !owes {
		return nil // through, or a trim (op)
	}
	return m.settle(ctx, o, fc, lc, rerr != nil)
}

// settle decides when a write whose chunks the replica lacks may be
// acknowledged (the rule is in the package doc, "Writes the replica
// lacks"). Before the first full sync, or once the mirror is released: at
// once. Policy block: once the copier has sent its chunks (and, for FUA,
// the replica flushed them); it fails if the daemon stops, the mirror
// closes or ctx ends first. Policy degrade, or paused by the user: at
// once, after the divergence is recorded durably (dirty log and OnDegrade).
func (m *Mirror) settle(ctx context.Context, o op, fc, lc int64, failed bool) error {
	m.mu.Lock()
	if !m.synced || m.released {
		m.mu.Unlock()
		return nil
	}
	if m.opts.Policy == Block && !m.paused {
		err := m.waitLocked(ctx, true, func() bool {
			return m.paused || m.released || !m.anyOwedLocked(fc, lc)
		})
		paused, released := m.paused, m.released
		m.mu.Unlock()
		switch {
		case err != nil:
			return fmt.Errorf("%s at %d+%d on volume %s waits for the replica (policy block): %w", o.name, o.off, o.n, m.opts.Volume, err)
		case released:
			return nil
		case !paused && o.fua:
			return m.flushReplica(ctx)
		case !paused:
			return nil
		}
		// Paused by the user while it waited: acknowledged as every write
		// made while paused, once the divergence is recorded.
	} else {
		m.mu.Unlock()
	}
	if failed && m.opts.DirtyLog != nil {
		// The tracker set these bits, but a checkpoint may have reset
		// the dirty log since: make them durable again before the ack.
		if err := m.opts.DirtyLog.Mark(fc*ChunkSize, (lc-fc+1)*ChunkSize); err != nil {
			return fmt.Errorf("%s on volume %s: record what the replica lacks: %w", o.name, m.opts.Volume, err)
		}
	}
	if err := m.recordDivergence(); err != nil {
		return fmt.Errorf("%s on volume %s: record the degraded mirror: %w", o.name, m.opts.Volume, err)
	}
	return nil
}

// recordDivergence runs OnDegrade once per stay out of sync, before the
// first write or flush the replica lacks is acknowledged. A failure is
// returned (that request fails) and the next one tries again.
func (m *Mirror) recordDivergence() error {
	m.mu.Lock()
	if m.degraded || !m.synced || m.opts.OnDegrade == nil {
		m.mu.Unlock()
		return nil
	}
	cause := m.lastErr
	if cause == nil && m.paused {
		cause = errPaused
	}
	m.mu.Unlock()
	if err := m.opts.OnDegrade(cause); err != nil {
		return err
	}
	m.mu.Lock()
	m.degraded = true
	m.mu.Unlock()
	return nil
}

// errPaused is the divergence cause while the user paused the mirror.
var errPaused = errors.New("the mirror is paused")

// waitLocked waits on m.cond until done() holds. It ends early with
// ErrClosed once the mirror closes, with ctx's error once ctx ends, and,
// if stoppable, with ErrStopping once the daemon stops (StopWaits).
// Every wait in this package that can last longer than one replica
// request goes through it.
func (m *Mirror) waitLocked(ctx context.Context, stoppable bool, done func() bool) error {
	if done() {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	for !done() {
		switch {
		case m.closed:
			return ErrClosed
		case stoppable && m.stopping:
			return ErrStopping
		case ctx.Err() != nil:
			return ctx.Err()
		}
		m.cond.Wait()
	}
	return nil
}

// overlapsLocked reports whether a write in flight overlaps [off, off+n).
// Overlapping writes are serialised: two in flight at once could land in
// one order locally and in the other on the replica.
func (m *Mirror) overlapsLocked(off, n int64) bool {
	for _, r := range m.inflight {
		if off < r.Off+r.Len && r.Off < off+n {
			return true
		}
	}
	return false
}

func (m *Mirror) copyingAnyLocked(fc, lc int64) bool {
	if len(m.copying) == 0 {
		return false
	}
	for c := fc; c <= lc; c++ {
		if m.copying[c] {
			return true
		}
	}
	return false
}

// anyOwedLocked reports whether the replica lacks an acknowledged write
// on a chunk of fc..lc (dirty or being copied).
func (m *Mirror) anyOwedLocked(fc, lc int64) bool {
	if m.nowed == 0 {
		return false
	}
	for c := fc; c <= lc; c++ {
		if m.owed.test(c) {
			return true
		}
	}
	return false
}

// markChunksLocked marks chunks fc..lc dirty and, if owed (the replica
// lacks a write there, not only a trim), owed.
func (m *Mirror) markChunksLocked(fc, lc int64, owed bool) {
	for c := fc; c <= lc; c++ {
		if m.dirty.set(c) {
			m.ndirty++
		}
		if owed && m.owed.set(c) {
			m.nowed++
		}
	}
}

// markLocked marks the chunks holding [off, off+n) dirty and owed.
func (m *Mirror) markLocked(off, n int64) {
	if n <= 0 || off >= m.opts.Size {
		return
	}
	n = min(n, m.opts.Size-off)
	m.markChunksLocked(off/ChunkSize, (off+n-1)/ChunkSize, true)
}
