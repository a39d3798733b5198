package mirror

import (
	"context"
	"fmt"
	"time"
)

// checkpointLoop resets the journal now and then while the mirror is in
// sync, so a crash of this daemon resyncs only the last few seconds.
func (m *Mirror) checkpointLoop() {
	defer m.wg.Done()
	tk := time.NewTicker(m.opts.Checkpoint)
	defer tk.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tk.C:
			m.checkpoint()
		}
	}
}

// checkpoint resets the journal, then flushes the replica: everything the
// journal held is then durable on the replica. If the flush fails, what
// the journal held is marked again (durably) and dirty, and the replica
// is dropped. Writes in flight during the reset are safe: their extents
// stay in the activity log until they complete, and a write that fails
// on the replica re-marks its own chunks (settle).
func (m *Mirror) checkpoint() {
	j := m.opts.Journal
	if j == nil {
		return
	}
	m.mu.Lock()
	if m.closed || m.ckpt || m.state != StateInSync || m.ndirty > 0 || m.target == nil {
		m.mu.Unlock()
		return
	}
	m.ckpt = true
	t, gen := m.target, m.tgen
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.ckpt = false
		m.mu.Unlock()
	}()

	old, done, err := j.Rotate(func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return !m.closed && m.state == StateInSync && m.ndirty == 0 && len(m.copying) == 0 && m.tgen == gen
	})
	if err != nil {
		m.opts.Logger.Warn("mirror checkpoint: reset journal", "volume", m.opts.Volume, "err", err)
		return // the journal still holds everything
	}
	if !done {
		return // something became dirty meanwhile: the journal must keep it
	}
	ctx, cancel := m.remoteCtx(context.Background())
	ferr := t.Flush(ctx)
	cancel()
	if ferr == nil {
		return
	}
	var merr error
	for _, r := range old {
		if err := j.Mark(r.Off, r.Len); err != nil && merr == nil {
			merr = err
		}
	}
	m.mu.Lock()
	for _, r := range old {
		m.markLocked(r.Off, r.Len)
	}
	m.replicaFailedLocked(gen, fmt.Errorf("flush the replica: %w", ferr))
	if merr != nil {
		m.failLocked(fmt.Errorf("re-record what the replica lacks after a failed flush: %w", merr))
	}
	m.mu.Unlock()
}
