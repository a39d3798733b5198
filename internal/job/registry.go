package job

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/catalog"
)

// Func is the body of a job. It reports progress through j and returns
// when done; it must return promptly after ctx is cancelled.
type Func func(ctx context.Context, j *Job) error

// DefaultFlushInterval is how often the progress of running jobs is
// recorded in the store.
const DefaultFlushInterval = 2 * time.Second

// Options configure a Registry. The zero value is an in-memory registry.
type Options struct {
	// Store records jobs; nil keeps them in memory (IDs restart at 1).
	Store Store
	// Logger receives store errors and interrupted jobs; nil discards.
	Logger *slog.Logger
	// Interrupted says what happened after a job of that kind on that
	// volume was interrupted by a daemon stop; it completes the error
	// "the daemon stopped while the job ran; ...". Nil or "" gives
	// "see the jobs started after it for the recovery".
	Interrupted func(kind, volume string) string
	// FlushInterval is how often progress is recorded; 0 means
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Keep is how many finished jobs are listed; 0 means
	// catalog.KeepFinishedJobs (the store prunes to the same number).
	Keep int
}

// Registry owns every job of the daemon.
type Registry struct {
	store       Store // nil: memory only
	log         *slog.Logger
	now         func() time.Time
	keep        int
	ctx         context.Context // parent of every job's context; cancelled by Close
	cancel      context.CancelFunc
	wg          sync.WaitGroup // running job goroutines
	stopFlusher chan struct{}  // closed by Close; nil without a store
	flusherDone chan struct{}

	mu     sync.Mutex // guards live, past, next, closed
	live   map[string]*Job
	past   map[string]Info // finished jobs, this run's and loaded ones, at most keep
	next   uint64          // last ID issued, without a store
	closed bool

	// pmu serialises the store writes of progress and of final records,
	// so an older progress record never overwrites a final one; it also
	// guards every Job's saved* fields.
	pmu sync.Mutex
}

// NewRegistry returns a registry. With a store it loads the recorded
// jobs, marks those still "running" as interrupted (ended now), and
// starts recording progress. A store that cannot be read is logged and
// the registry runs in memory: job start must not depend on history.
func NewRegistry(o Options) *Registry {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Keep <= 0 {
		o.Keep = catalog.KeepFinishedJobs
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{store: o.Store, log: o.Logger, now: o.Now, keep: o.Keep, ctx: ctx, cancel: cancel,
		live: map[string]*Job{}, past: map[string]Info{}}
	if r.store == nil {
		return r
	}
	if err := r.load(o.Interrupted); err != nil {
		r.log.Error("job history not loaded; this run's jobs are kept in memory only", "err", err)
		r.store = nil
		r.past = map[string]Info{} // IDs restart at 1: no stale history under them
		return r
	}
	r.stopFlusher, r.flusherDone = make(chan struct{}), make(chan struct{})
	go r.flusher(o.FlushInterval)
	return r
}

// Start runs fn in a new goroutine as a job of the given kind on volume.
// The job's context is independent of the caller's (an HTTP request ends
// long before the job does) and is cancelled by Cancel or Close. With a
// store the job is recorded before it starts; if that fails, it does not
// start.
func (r *Registry) Start(kind, volume string, total int64, fn Func) (*Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("start %s job on %s: daemon is shutting down", kind, volume)
	}
	started := r.now().UTC()
	var id uint64
	if r.store != nil {
		rec, err := r.store.AddJob(catalog.Job{Kind: kind, Volume: volume, State: string(Running),
			Total: total, Started: started})
		if err != nil {
			return nil, fmt.Errorf("start %s job on %s: %w", kind, volume, err)
		}
		id = rec.ID
	} else {
		r.next++
		id = r.next
	}
	ctx, cancel := context.WithCancel(r.ctx)
	j := &Job{id: strconv.FormatUint(id, 10), kind: kind, volume: volume, started: started, now: r.now,
		cancel: cancel, finish: make(chan struct{}), state: Running, savedTotal: total}
	j.total.Store(total)
	r.live[j.id] = j
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := fn(ctx, j)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		cancel()
		j.end(err, r.now().UTC())
		r.retire(j)
	}()
	return j, nil
}

// retire records a job's end, moves it to the finished jobs and wakes
// its waiters. When it was the last job running, the memory the jobs
// used (read buffers, packs, compression windows: hundreds of MiB for a
// backup or a migration) is handed back to the OS before the waiters
// wake: an idle daemon should be as small after a job as before it, and
// Go's runtime otherwise returns freed memory only gradually, after a GC
// that an idle daemon may not run for minutes.
func (r *Registry) retire(j *Job) {
	in := j.Info()
	if r.store != nil {
		r.pmu.Lock()
		if err := r.store.PutJobs([]catalog.Job{record(in)}); err != nil {
			r.log.Error("record the end of a job", "job", j.id, "kind", j.kind, "volume", j.volume, "state", in.State, "err", err)
		}
		r.pmu.Unlock()
	}
	r.mu.Lock()
	delete(r.live, j.id)
	r.addPastLocked(in)
	idle := len(r.live) == 0
	r.mu.Unlock()
	if idle {
		// Buffers parked in a sync.Pool (pack and copy buffers) survive
		// one collection in the pool's victim cache: the first GC moves
		// them there, the one inside FreeOSMemory frees them and returns
		// the pages.
		runtime.GC()
		debug.FreeOSMemory()
	}
	close(j.finish)
}

// addPastLocked adds a finished job and drops the oldest beyond keep.
// Callers hold r.mu (or own r, as load does during NewRegistry).
func (r *Registry) addPastLocked(in Info) {
	r.past[in.ID] = in
	for len(r.past) > r.keep {
		oldest := ""
		for id := range r.past {
			if oldest == "" || idLess(id, oldest) {
				oldest = id
			}
		}
		delete(r.past, oldest)
	}
}

// Info returns a snapshot of the job with the given ID, running or
// finished (in this run or an earlier one).
func (r *Registry) Info(id string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.live[id]; ok {
		return j.Info(), nil
	}
	if in, ok := r.past[id]; ok {
		return in, nil
	}
	return Info{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
}

// Wait waits until the job ends or ctx is done and returns its final
// snapshot; the error is ctx's or ErrNotFound, never the job's own.
func (r *Registry) Wait(ctx context.Context, id string) (Info, error) {
	r.mu.Lock()
	j, ok := r.live[id]
	r.mu.Unlock()
	if !ok {
		return r.Info(id)
	}
	select {
	case <-j.finish:
		return j.Info(), nil
	case <-ctx.Done():
		return Info{}, ctx.Err()
	}
}

// List returns a snapshot of every job, oldest first: the running ones
// and the last finished ones (Keep), also from earlier runs.
func (r *Registry) List() []Info {
	r.mu.Lock()
	out := make([]Info, 0, len(r.live)+len(r.past))
	for _, j := range r.live {
		out = append(out, j.Info())
	}
	for _, in := range r.past {
		out = append(out, in)
	}
	r.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return idLess(out[a].ID, out[b].ID) })
	return out
}

// idLess orders decimal IDs: shorter is older, then lexical order.
func idLess(x, y string) bool { return len(x) < len(y) || (len(x) == len(y) && x < y) }

// Cancel asks a running job to stop and returns its snapshot. Cancelling
// a job that has ended (done, failed, cancelled, interrupted) changes
// nothing and returns it as it is: the caller tells by its state.
func (r *Registry) Cancel(id string) (Info, error) {
	r.mu.Lock()
	j, ok := r.live[id]
	r.mu.Unlock()
	if !ok {
		return r.Info(id)
	}
	j.cancel()
	return j.Info(), nil
}

// Close cancels every running job, waits for all of them to return and
// record their end, then stops recording. The store may be closed after.
func (r *Registry) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	if r.stopFlusher != nil {
		close(r.stopFlusher)
		<-r.flusherDone
	}
}
