package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ChunkSize is the unit of the dirty set: the CBT granularity.
const ChunkSize = 64 << 10

// Dialer opens a new connection to the replica. An error wrapping
// ErrRefused stops the mirror; any other is retried with backoff.
type Dialer func(ctx context.Context) (blockdev.Device, error)

// DirtyLog is the persistent superset of the chunks the replica may lack
// (see the package doc). Its writes are recorded by the volume's tracker;
// the mirror only reads it, re-marks ranges and resets it.
type DirtyLog interface {
	// Mark adds [off, off+n) durably.
	Mark(off, n int64) error
	// Rotate resets the dirty log durably and returns what it held, if ok
	// still says so once no write is between the tracker and the mirror
	// (the engine holds the volume's I/O around ok and the reset: a
	// local-only write whose bit the reset cleared would otherwise be
	// missing from the dirty log after a crash). done is false if ok said no.
	Rotate(ok func() bool) (old []blockdev.Range, done bool, err error)
	// Ranges is what the dirty log holds now.
	Ranges() []blockdev.Range
}

// Options configure a Mirror.
type Options struct {
	Volume string
	Size   int64
	Policy Policy
	Dial   Dialer
	// DirtyLog records what the replica may lack; nil keeps it in memory
	// only (tests).
	DirtyLog DirtyLog
	// Dirty is what the replica lacks at start; Synced says the replica
	// was in sync once (false: this is the first copy, state syncing).
	Dirty  []blockdev.Range
	Synced bool
	// OnDegrade is called once, before the first write the replica lacks
	// is acknowledged, each time the mirror leaves in-sync (the engine
	// records that this side now holds writes its replica does not). An
	// error fails that write.
	OnDegrade func(cause error) error
	// OnChange is called (without locks held) after every state change.
	OnChange func(Status)
	Logger   *slog.Logger

	Workers    int           // copy workers (default 4)
	CopyBytes  int64         // bytes per copy request (default 1 MiB)
	MinBackoff time.Duration // reconnect backoff, doubling (default 100 ms)
	MaxBackoff time.Duration // its cap (default 5 s)
	Checkpoint time.Duration // dirty-log reset period while in sync (default 10 s)
	// Timeout bounds every request to the replica (default 5 s): a
	// replica that does not answer in time (a cut link sends no reset) is
	// dropped like one that failed.
	Timeout time.Duration
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.CopyBytes < ChunkSize {
		o.CopyBytes = 1 << 20
	}
	o.CopyBytes -= o.CopyBytes % ChunkSize
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Checkpoint <= 0 {
		o.Checkpoint = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Mirror replicates one volume. All methods are safe for concurrent use.
type Mirror struct {
	opts    Options
	nchunks int64

	// local is the device below the newest Filter (the volume's layers);
	// the copier reads it directly, never through the gate, so a write
	// waiting for the copier cannot deadlock a pivot that drains I/O.
	local atomic.Pointer[blockdev.Device]

	mu   sync.Mutex // guards every field below
	cond *sync.Cond // signalled on: dirty cleared, writers drained, copying done, target changes, close

	dirty  bitset // chunks to copy: the replica may differ from the volume there
	ndirty int64  // bits set in dirty
	// owed: chunks the replica lacks an acknowledged write on (a write
	// not sent through, a failed replica write, what a dropped
	// connection's dirty log holds). A subset of dirty and copying: a chunk
	// dirty only because a trim changed it is not owed (after a trim the
	// range's content is unspecified, so old bytes there lack no write).
	// A chunk leaves owed when a copy of it succeeded and nothing marked it
	// again meanwhile.
	owed     bitset
	nowed    int64                     // bits set in owed
	writers  map[int64]int32           // writes in flight per chunk
	inflight map[uint64]blockdev.Range // writes in flight, by sequence number
	wseq     uint64
	copying  map[int64]bool // chunks being copied
	cursor   int64          // where the copier looks next

	target blockdev.Device // nil while disconnected
	tgen   uint64          // bumped at every connect and drop
	state  State
	synced bool // the replica was in sync once
	paused bool
	closed bool
	// released: the mirror is being removed (Release); the policy no
	// longer holds writes back.
	released bool
	// stopping: the daemon is stopping (StopWaits); what would wait for
	// the replica fails instead.
	stopping bool
	since    time.Time
	lastErr  error
	errAt    time.Time
	dialing  bool // the reconnect loop runs
	// dropped is closed once the last dropped connection was aborted
	// (dropLocked); nil if none was dropped.
	dropped chan struct{}
	ckpt    bool // a checkpoint is running
	// finishing: the last dirty chunk was copied and the replica is being
	// flushed; in-sync only after that flush.
	finishing bool

	sent     atomic.Int64 // bytes written to the replica (writes and copies)
	copied   atomic.Int64 // bytes the copier sent
	through  atomic.Int64 // writes acknowledged by both sides
	stop     chan struct{}
	wg       sync.WaitGroup
	degraded bool // OnDegrade succeeded since the last in-sync
}

// New makes a mirror and starts its copier and connection loop. It does
// not wait for the replica: it connects in the background.
func New(opts Options) (*Mirror, error) {
	opts.defaults()
	if opts.Size <= 0 || opts.Dial == nil {
		return nil, fmt.Errorf("mirror of volume %s: size %d, dialer set %v: invalid options", opts.Volume, opts.Size, opts.Dial != nil)
	}
	n := (opts.Size + ChunkSize - 1) / ChunkSize
	m := &Mirror{opts: opts, nchunks: n, dirty: newBitset(n), owed: newBitset(n), writers: map[int64]int32{}, inflight: map[uint64]blockdev.Range{}, copying: map[int64]bool{},
		synced: opts.Synced, since: time.Now(), stop: make(chan struct{})}
	m.cond = sync.NewCond(&m.mu)
	for _, r := range opts.Dirty {
		m.markLocked(r.Off, r.Len)
	}
	m.state = m.stateLocked()
	m.dialing = true
	m.wg.Add(1 + opts.Workers + 1)
	go m.connectLoop()
	for range opts.Workers {
		go m.copyLoop()
	}
	go m.checkpointLoop()
	return m, nil
}

// Filter returns the mirror's device over next (the volume's layers). A
// pivot calls it again with the new layers; the newest one is what the
// copier reads.
func (m *Mirror) Filter(next blockdev.Device) blockdev.Device {
	m.local.Store(&next)
	return &Filter{next: next, m: m}
}

// Pause stops sending: the connection is closed and writes are only
// tracked until Resume.
func (m *Mirror) Pause() {
	m.mu.Lock()
	m.paused = true
	if m.target != nil && m.opts.DirtyLog != nil {
		// The connection ends without a flush: what it was sent since
		// the last checkpoint may not be durable there (as on a failure).
		for _, r := range m.opts.DirtyLog.Ranges() {
			m.markLocked(r.Off, r.Len)
		}
	}
	m.dropLocked(nil)
	m.setStateLocked()
	m.cond.Broadcast() // a write or flush the block policy holds back is acknowledged now
	m.mu.Unlock()
	m.changed()
}

// Resume undoes Pause: the mirror reconnects and resyncs.
func (m *Mirror) Resume() {
	m.mu.Lock()
	m.paused = false
	if m.state == StateRefused {
		m.lastErr = nil
		m.state = StateDegraded
	}
	m.startDialLocked()
	m.setStateLocked()
	m.cond.Broadcast()
	m.mu.Unlock()
	m.changed()
}

// Release says the mirror is being removed: from now on the policy holds
// no write or flush back. A write the block policy holds is acknowledged
// at once (it is on the volume; no replica is required any more). A
// replica that is not in sync is dropped, so that requests in flight to
// it end now. Close follows.
func (m *Mirror) Release() {
	m.mu.Lock()
	m.released = true
	if m.state != StateInSync {
		m.dropLocked(nil)
	}
	m.cond.Broadcast()
	m.mu.Unlock()
}

// StopWaits says the daemon is stopping: a write or flush that waits for
// the replica (policy block) fails now with ErrStopping, and so does every
// later one that would wait. Writes and flushes a connected replica
// completes are not affected. Close follows.
func (m *Mirror) StopWaits() {
	m.mu.Lock()
	m.stopping = true
	m.cond.Broadcast()
	m.mu.Unlock()
}

// Close stops the mirror. If the replica is in sync it is flushed and the
// dirty log reset, so the next start has nothing to resync; otherwise the
// replica connection is dropped first, so that requests in flight end at
// once. A write it holds back fails with ErrClosed; writes through old
// Filters fail with ErrClosed afterwards. Close returns when ctx ends even
// if a worker does not (its error then says so).
func (m *Mirror) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stop)
	if !m.cleanLocked() {
		m.dropLocked(ErrClosed)
	}
	m.cond.Broadcast()
	m.mu.Unlock()
	if err := waitCtx(ctx, m.wg.Wait); err != nil {
		return fmt.Errorf("close mirror of volume %s: stop its workers: %w", m.opts.Volume, err)
	}

	m.mu.Lock()
	t, clean, seq := m.target, m.cleanLocked(), m.wseq
	m.target = nil
	m.tgen++
	m.mu.Unlock()
	if t == nil {
		return nil
	}
	var err error
	if clean && m.opts.DirtyLog != nil {
		// Flush, then reset: the reset clears only what the flush made
		// durable (no write entered since; see checkpoint).
		fctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
		err = t.Flush(fctx)
		cancel()
		if err == nil {
			_, _, err = m.opts.DirtyLog.Rotate(func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return len(m.inflight) == 0 && m.wseq == seq
			})
		}
	}
	// A replica that is not in sync may hold requests in flight: abort
	// it rather than send them a goodbye it may never read.
	if a, ok := t.(aborter); !clean && ok {
		a.Abort()
	} else if cerr := waitCtx(ctx, func() { t.Close() }); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close mirror of volume %s: %w", m.opts.Volume, err)
	}
	return nil
}

// cleanLocked: connected, in sync, nothing dirty, copied or written.
func (m *Mirror) cleanLocked() bool {
	return m.target != nil && m.state == StateInSync && m.ndirty == 0 && len(m.copying) == 0 && len(m.inflight) == 0
}

// waitCtx runs fn and waits for it until ctx ends (fn then goes on in the
// background).
func waitCtx(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	go func() {
		fn()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Mirror) changed() {
	if m.opts.OnChange != nil {
		m.opts.OnChange(m.Status())
	}
}

// remoteCtx is the context of one request to the replica: not cancelled
// with the client's request (a replica connection cannot cancel a request
// without being torn down) but bounded by the replica timeout.
func (m *Mirror) remoteCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
}
