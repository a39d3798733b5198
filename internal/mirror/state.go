package mirror

import (
	"fmt"
	"time"
)

// State is where a mirror is in its life (see the package doc).
type State string

// States.
const (
	StateSyncing   State = "syncing"
	StateInSync    State = "in-sync"
	StateDegraded  State = "degraded"
	StateResyncing State = "resyncing"
	StatePaused    State = "paused"
	StateRefused   State = "refused"
)

// Policy says what writes do while the replica is unreachable.
type Policy string

// Policies.
const (
	// Degrade keeps the VM running: writes are acknowledged locally and
	// their chunks resynced when the replica returns.
	Degrade Policy = "degrade"
	// Block acknowledges no write the replica lacks: writes wait.
	Block Policy = "block"
)

// ParsePolicy parses "degrade" or "block".
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case Degrade, Block:
		return Policy(s), nil
	}
	return "", fmt.Errorf("mirror policy %q: want degrade or block", s)
}

// Status is a snapshot of a mirror.
type Status struct {
	State       State     `json:"state"`
	Policy      Policy    `json:"policy"`
	Connected   bool      `json:"connected"`
	BytesToSync int64     `json:"bytes_to_sync"` // dirty chunks and chunks being copied
	BytesSent   int64     `json:"bytes_sent"`    // written to the replica since start (writes and copies)
	BytesCopied int64     `json:"bytes_copied"`  // sent by the copier (sync and resync)
	Since       time.Time `json:"since"`         // when the state last changed
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status describes the mirror now.
func (m *Mirror) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{State: m.state, Policy: m.opts.Policy, Connected: m.target != nil,
		BytesToSync: min((m.ndirty+int64(len(m.copying)))*ChunkSize, m.opts.Size),
		BytesSent:   m.sent.Load(), BytesCopied: m.copied.Load(), Since: m.since.UTC()}
	if m.lastErr != nil {
		s.LastError = m.lastErr.Error()
		s.LastErrorAt = m.errAt.UTC()
	}
	return s
}

// stateLocked computes the state from the fields.
func (m *Mirror) stateLocked() State {
	switch {
	case m.state == StateRefused && m.lastErr != nil:
		return StateRefused
	case m.paused:
		return StatePaused
	case m.target == nil:
		if !m.synced {
			return StateSyncing
		}
		return StateDegraded
	case m.ndirty > 0 || len(m.copying) > 0 || m.finishing:
		if !m.synced {
			return StateSyncing
		}
		return StateResyncing
	}
	return StateInSync
}

// setStateLocked recomputes the state and stamps a change.
func (m *Mirror) setStateLocked() {
	s := m.stateLocked()
	if s != m.state {
		m.opts.Logger.Info("mirror state", "volume", m.opts.Volume, "from", m.state, "to", s)
		m.state = s
		m.since = time.Now()
	}
}

// failLocked records err as the last error.
func (m *Mirror) failLocked(err error) {
	m.lastErr = err
	m.errAt = time.Now()
}
