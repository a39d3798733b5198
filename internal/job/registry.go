package job

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Func is the body of a job. It reports progress through j and returns
// when done; it must return promptly after ctx is cancelled.
type Func func(ctx context.Context, j *Job) error

// Registry owns every job of the daemon.
type Registry struct {
	ctx    context.Context // parent of every job's context; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // running job goroutines

	mu     sync.Mutex // guards jobs, next, closed
	jobs   map[string]*Job
	next   uint64
	closed bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{ctx: ctx, cancel: cancel, jobs: map[string]*Job{}}
}

// Start runs fn in a new goroutine as a job of the given kind on volume.
// The job's context is independent of the caller's (an HTTP request ends
// long before the job does) and is cancelled by Cancel or Close.
func (r *Registry) Start(kind, volume string, total int64, fn Func) (*Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("start %s job on %s: daemon is shutting down", kind, volume)
	}
	r.next++
	ctx, cancel := context.WithCancel(r.ctx)
	j := &Job{id: fmt.Sprintf("%d", r.next), kind: kind, volume: volume, started: time.Now().UTC(),
		cancel: cancel, finish: make(chan struct{}), state: Running}
	j.total.Store(total)
	r.jobs[j.id] = j
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(j.finish)
		defer cancel()
		err := fn(ctx, j)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		j.end(err, time.Now().UTC())
	}()
	return j, nil
}

// Get returns the job with the given ID.
func (r *Registry) Get(id string) (*Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	return j, nil
}

// List returns a snapshot of every job, oldest first.
func (r *Registry) List() []Info {
	r.mu.Lock()
	js := make([]*Job, 0, len(r.jobs))
	for _, j := range r.jobs {
		js = append(js, j)
	}
	r.mu.Unlock()
	out := make([]Info, len(js))
	for i, j := range js {
		out[i] = j.Info()
	}
	// IDs are decimal counters: shorter is older, then lexical order.
	sort.Slice(out, func(a, b int) bool {
		x, y := out[a].ID, out[b].ID
		return len(x) < len(y) || (len(x) == len(y) && x < y)
	})
	return out
}

// Cancel asks the job to stop. Cancelling a finished job is a no-op.
func (r *Registry) Cancel(id string) (*Job, error) {
	j, err := r.Get(id)
	if err != nil {
		return nil, err
	}
	j.cancel()
	return j, nil
}

// Close cancels every running job and waits for all of them to return.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}
