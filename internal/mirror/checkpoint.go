package mirror

import (
	"context"
	"fmt"
	"time"
)

// checkpointLoop resets the dirty log now and then while the mirror is in
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

// checkpoint flushes the replica, then resets the dirty log: the reset
// happens only after the flush succeeded, and only if no write entered the
// mirror since before the flush (and none was in flight then), so that
// everything the reset clears is durable on the replica. The reset runs
// with the volume's I/O held (DirtyLog.Rotate), which drains the writes
// between the tracker and the mirror. On a busy volume a checkpoint may
// find no such quiet moment; the dirty log then keeps growing until one
// comes (a crash resyncs more, nothing is lost). A failed flush drops the
// replica; everything the dirty log holds becomes dirty and is resent.
func (m *Mirror) checkpoint() {
	j := m.opts.DirtyLog
	if j == nil {
		return
	}
	m.mu.Lock()
	if m.closed || m.ckpt || m.state != StateInSync || m.ndirty > 0 || m.target == nil || len(m.inflight) > 0 {
		m.mu.Unlock()
		return
	}
	m.ckpt = true
	t, gen, seq := m.target, m.tgen, m.wseq
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.ckpt = false
		m.mu.Unlock()
	}()

	ctx, cancel := m.remoteCtx(context.Background())
	ferr := t.Flush(ctx)
	cancel()
	if ferr != nil {
		m.mu.Lock()
		m.replicaFailedLocked(gen, fmt.Errorf("flush the replica: %w", ferr))
		m.mu.Unlock()
		return
	}
	_, _, err := j.Rotate(func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return !m.closed && m.state == StateInSync && m.ndirty == 0 && len(m.copying) == 0 && m.tgen == gen &&
			m.wseq == seq && len(m.inflight) == 0
	})
	if err != nil {
		m.opts.Logger.Warn("mirror checkpoint: reset dirty log", "volume", m.opts.Volume, "err", err)
		// the dirty log still holds everything
	}
}
