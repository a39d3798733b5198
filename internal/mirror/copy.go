package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// run is a set of consecutive chunks taken by one copy.
type run struct {
	first, n int64
	gen      uint64
	t        blockdev.Device
}

// copyLoop is one copy worker: it takes runs of dirty chunks nobody is
// writing and sends them, until the mirror closes.
func (m *Mirror) copyLoop() {
	defer m.wg.Done()
	buf := make([]byte, m.opts.CopyBytes)
	for {
		r, ok := m.take()
		if !ok {
			return
		}
		err := m.copyRun(r, buf)
		m.mu.Lock()
		for c := r.first; c < r.first+r.n; c++ {
			delete(m.copying, c)
			// Copied, and not marked again meanwhile (a dropped
			// connection marks what its dirty log holds): the replica
			// now has every write acknowledged on it.
			if err == nil && !m.dirty.test(c) && m.owed.clear(c) {
				m.nowed--
			}
		}
		if err != nil {
			m.markChunksLocked(r.first, r.first+r.n-1, false) // owed stays as it was
		}
		m.cond.Broadcast()
		var finish bool
		switch {
		case err == nil:
			finish = m.ndirty == 0 && len(m.copying) == 0 && m.target != nil && r.gen == m.tgen && !m.finishing
			if finish {
				m.finishing = true
			}
		case isLocal(err):
			// The layers were swapped under the read (a pivot closed
			// them): copy again from the new ones, after a breath.
			m.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			continue
		default:
			m.replicaFailedLocked(r.gen, err)
		}
		m.mu.Unlock()
		if finish {
			m.finishSync(r.gen, r.t)
		}
	}
}

// take waits for a run to copy: a connected replica, a dirty chunk with
// no write in flight. It marks the run copying and clean.
func (m *Mirror) take() (run, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	maxN := m.opts.CopyBytes / ChunkSize
	for {
		if m.closed {
			return run{}, false
		}
		if m.target != nil && !m.paused && m.ndirty > 0 {
			if r, ok := m.pickLocked(maxN); ok {
				r.gen, r.t = m.tgen, m.target
				return r, true
			}
		}
		m.cond.Wait()
	}
}

// pickLocked finds the next dirty chunk from the cursor that no write
// holds, and extends it over following such chunks up to maxN.
func (m *Mirror) pickLocked(maxN int64) (run, bool) {
	for pass := 0; pass < 2; pass++ {
		start := int64(0)
		if pass == 0 {
			start = m.cursor
		}
		for c := m.dirty.next(start, m.nchunks); c >= 0; c = m.dirty.next(c+1, m.nchunks) {
			if m.writers[c] > 0 || m.copying[c] {
				continue
			}
			r := run{first: c}
			for r.n < maxN && c+r.n < m.nchunks && m.dirty.test(c+r.n) && m.writers[c+r.n] == 0 && !m.copying[c+r.n] {
				m.dirty.clear(c + r.n)
				m.copying[c+r.n] = true
				r.n++
			}
			m.ndirty -= r.n
			m.cursor = c + r.n
			return r, true
		}
	}
	return run{}, false
}

// localError marks a failure to read the local layers.
type localError struct{ err error }

func (e *localError) Error() string { return "read the volume: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func isLocal(err error) bool {
	_, ok := err.(*localError)
	return ok
}

// copyRun reads a run from the local layers and writes it to the replica;
// all-zero data is sent as a zero request.
func (m *Mirror) copyRun(r run, buf []byte) error {
	off := r.first * ChunkSize
	n := min(r.n*ChunkSize, m.opts.Size-off)
	p := buf[:n]
	ctx := context.Background()
	local := m.local.Load()
	if local == nil {
		return &localError{fmt.Errorf("no layers yet")}
	}
	if err := (*local).ReadAt(ctx, p, off); err != nil {
		return &localError{err}
	}
	rctx, cancel := m.remoteCtx(ctx)
	defer cancel()
	var err error
	if blockdev.IsZero(p) && r.t.Caps().Zero {
		err = r.t.WriteZeroes(rctx, off, n, 0)
	} else {
		err = r.t.WriteAt(rctx, p, off, 0)
	}
	if err != nil {
		return fmt.Errorf("copy %d+%d to the replica: %w", off, n, err)
	}
	m.sent.Add(n)
	m.copied.Add(n)
	return nil
}

// finishSync flushes the replica after the last dirty chunk was copied;
// then the mirror is in sync and the dirty log is reset.
func (m *Mirror) finishSync(gen uint64, t blockdev.Device) {
	ctx, cancel := m.remoteCtx(context.Background())
	err := t.Flush(ctx)
	cancel()
	m.mu.Lock()
	m.finishing = false
	if err != nil {
		m.replicaFailedLocked(gen, fmt.Errorf("flush the replica: %w", err))
		m.mu.Unlock()
		return
	}
	if gen != m.tgen || m.ndirty > 0 || len(m.copying) > 0 {
		m.mu.Unlock() // written or dropped meanwhile: the copier goes on
		return
	}
	m.synced = true
	m.degraded = false
	m.setStateLocked()
	m.cond.Broadcast()
	m.mu.Unlock()
	m.changed()
	m.checkpoint()
}
