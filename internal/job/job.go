// Package job runs long operations (import, export, later migration and
// backup) inside the daemon and reports their progress.
//
// The registry is in memory for now. A later issue persists jobs in the
// catalog; Info is already the JSON record that will be stored, and the
// Registry is the only place that creates, updates or lists jobs, so the
// store slots in behind it.
package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// State of a job. The strings are API values: must not change.
type State string

// Job states.
const (
	Running   State = "running"
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// ErrNotFound: no job with that ID.
var ErrNotFound = errors.New("job not found")

// Info is a snapshot of a job, as the API returns it.
type Info struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"`
	Volume   string     `json:"volume"`
	State    State      `json:"state"`
	Done     int64      `json:"done_bytes"`
	Total    int64      `json:"total_bytes"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Job is one running or finished operation. Progress counters are atomic;
// the rest is guarded by mu.
type Job struct {
	id      string
	kind    string
	volume  string
	started time.Time
	cancel  context.CancelFunc
	done    atomic.Int64
	total   atomic.Int64
	finish  chan struct{} // closed when the job's function has returned

	mu       sync.Mutex // guards state, finished, err
	state    State
	finished time.Time
	err      error
}

// ID returns the job's identifier.
func (j *Job) ID() string { return j.id }

// SetTotal sets the number of bytes the job will process.
func (j *Job) SetTotal(n int64) { j.total.Store(n) }

// Add records n more processed bytes.
func (j *Job) Add(n int64) { j.done.Add(n) }

// SetDone sets the number of processed bytes.
func (j *Job) SetDone(n int64) { j.done.Store(n) }

// Wait blocks until the job ends or ctx is done, and returns its error
// (context.Canceled for a cancelled job).
func (j *Job) Wait(ctx context.Context) error {
	select {
	case <-j.finish:
	case <-ctx.Done():
		return ctx.Err()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Info returns a snapshot.
func (j *Job) Info() Info {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := Info{ID: j.id, Kind: j.kind, Volume: j.volume, State: j.state,
		Done: j.done.Load(), Total: j.total.Load(), Started: j.started}
	if !j.finished.IsZero() {
		f := j.finished
		in.Finished = &f
	}
	if j.err != nil && j.state == Failed {
		in.Error = j.err.Error()
	}
	return in
}

// end records the job's outcome.
func (j *Job) end(err error, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = now
	j.err = err
	switch {
	case err == nil:
		j.state = Done
		j.done.Store(j.total.Load())
	case errors.Is(err, context.Canceled):
		j.state = Cancelled
	default:
		j.state = Failed
	}
}

func (j *Job) String() string { return fmt.Sprintf("job %s (%s %s)", j.id, j.kind, j.volume) }
