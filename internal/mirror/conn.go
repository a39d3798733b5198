package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// deviceWriter is what a request sends to the replica.
type deviceWriter = blockdev.Device

// replicaFailedLocked handles a failed request on connection gen: the
// connection is dropped (once per connection), everything the dirty log
// holds becomes dirty (the replica may not have made it durable), and the
// reconnect loop starts.
func (m *Mirror) replicaFailedLocked(gen uint64, err error) {
	if gen != m.tgen || m.target == nil {
		return // that connection was already dropped
	}
	m.opts.Logger.Warn("mirror replica failed", "volume", m.opts.Volume, "err", err)
	m.failLocked(err)
	m.dropLocked(err)
	if m.opts.DirtyLog != nil {
		for _, r := range m.opts.DirtyLog.Ranges() {
			m.markLocked(r.Off, r.Len)
		}
	}
	m.startDialLocked()
	m.setStateLocked()
	go m.changed()
}

// aborter is a replica connection that can be dropped without an orderly
// goodbye (nbd.Pool: its sockets are reset, unsent requests discarded).
type aborter interface{ Abort() error }

// dropLocked gives up the current connection: it is aborted (reset, so
// that requests not yet sent never reach the replica) or, for a device
// without Abort, closed. That runs in the background, so a dead peer
// cannot stall the caller; the reconnect loop waits for it (m.dropped)
// before it dials, so the source never holds two sessions to a replica.
func (m *Mirror) dropLocked(cause error) {
	if m.target == nil {
		return
	}
	t := m.target
	m.target = nil
	m.tgen++
	m.finishing = false
	m.cond.Broadcast()
	done := make(chan struct{})
	prev := m.dropped
	m.dropped = done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		if a, ok := t.(aborter); ok {
			a.Abort()
		} else {
			t.Close()
		}
	}()
	if cause == nil {
		m.setStateLocked()
	}
}

// startDialLocked starts the reconnect loop unless it runs or must not.
func (m *Mirror) startDialLocked() {
	if m.dialing || m.closed || m.paused || m.state == StateRefused {
		return
	}
	m.dialing = true
	m.wg.Add(1)
	go m.connectLoop()
}

// connectLoop dials until connected, refused, paused or closed, with
// capped exponential backoff.
func (m *Mirror) connectLoop() {
	defer m.wg.Done()
	backoff := m.opts.MinBackoff
	for {
		m.mu.Lock()
		if m.closed || m.paused || m.target != nil {
			m.dialing = false
			m.mu.Unlock()
			return
		}
		dropped := m.dropped
		m.mu.Unlock()
		if dropped != nil {
			// The dropped connection is reset first (an abort does not
			// wait for the peer, so this is short).
			select {
			case <-dropped:
			case <-m.stop:
				continue
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 2*m.opts.Timeout)
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		t, err := m.opts.Dial(ctx)
		cancel()
		if err == nil && t.Size() < m.opts.Size {
			t.Close()
			err = fmt.Errorf("the replica is %d bytes, the volume %d: %w", t.Size(), m.opts.Size, ErrRefused)
		}
		if err == nil && t.Caps().ReadOnly {
			t.Close()
			err = fmt.Errorf("the replica is read-only: %w", ErrRefused)
		}

		m.mu.Lock()
		switch {
		case m.closed || m.paused:
			m.dialing = false
			m.mu.Unlock()
			if t != nil && err == nil {
				t.Close()
			}
			return
		case err == nil:
			m.target = t
			m.tgen++
			m.dialing = false
			m.lastErr = nil
			m.opts.Logger.Info("mirror connected", "volume", m.opts.Volume, "dirty_bytes", m.ndirty*ChunkSize)
			m.setStateLocked()
			m.cond.Broadcast()
			m.mu.Unlock()
			m.changed()
			return
		case errors.Is(err, ErrRefused):
			m.failLocked(err)
			m.state = StateRefused
			m.since = time.Now()
			m.dialing = false
			m.cond.Broadcast()
			m.mu.Unlock()
			m.opts.Logger.Error("mirror refused", "volume", m.opts.Volume, "err", err)
			m.changed()
			return
		}
		m.failLocked(fmt.Errorf("connect to the replica: %w", err))
		m.setStateLocked()
		m.mu.Unlock()
		select {
		case <-m.stop:
			m.mu.Lock()
			m.dialing = false
			m.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, m.opts.MaxBackoff)
	}
}
