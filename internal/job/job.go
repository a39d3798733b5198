// Package job runs long operations (import, export, consolidation,
// promotion, migration) inside the daemon and reports their progress.
//
// The Registry is the only place that creates, updates or lists jobs.
// With a Store (the daemon's catalog) every job is recorded when it
// starts, when it ends, and its progress at most every FlushInterval, so
// `job list` and `job show` cover previous daemon runs and IDs keep
// increasing across restarts. A job that was running when the daemon
// stopped is listed as "interrupted" at the next start; the daemon's own
// recovery (a resumed merge, a rolled-back migration) runs as new jobs.
package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// State of a job. The strings are API values and are stored in the
// catalog: must not change.
type State string

// Job states.
const (
	Running   State = "running"
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
	// Interrupted: the daemon stopped (crash, kill -9) while the job ran.
	Interrupted State = "interrupted"
)

// Sentinel errors.
var (
	// ErrNotFound: no job with that ID (never issued, or pruned from the
	// history).
	ErrNotFound = errors.New("job not found")
)

// Info is a snapshot of a job, as the API returns it.
type Info struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Volume string `json:"volume"`
	State  State  `json:"state"`
	Done   int64  `json:"done_bytes"`
	Total  int64  `json:"total_bytes"`
	// ETASeconds is the time left at the average rate since the start;
	// nil (omitted) unless the job runs, has made progress and knows a
	// total above what is done.
	ETASeconds *int64 `json:"eta_seconds,omitempty"`
	// Rate is done_bytes over the time the job has run (until its end);
	// 0 (omitted) before any progress and for interrupted jobs.
	Rate     int64      `json:"rate_bytes_per_second,omitempty"`
	Detail   string     `json:"detail,omitempty"`
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
	now     func() time.Time
	cancel  context.CancelFunc
	done    atomic.Int64
	total   atomic.Int64
	finish  chan struct{} // closed when the job has ended and its end is recorded

	mu       sync.Mutex // guards state, finished, err, detail
	state    State
	finished time.Time
	err      error
	detail   string

	// What the store last holds for this running job; guarded by
	// Registry.pmu.
	savedDone, savedTotal int64
	savedDetail           string
}

// ID returns the job's identifier.
func (j *Job) ID() string { return j.id }

// SetTotal sets the number of bytes the job will process.
func (j *Job) SetTotal(n int64) { j.total.Store(n) }

// Add records n more processed bytes.
func (j *Job) Add(n int64) { j.done.Add(n) }

// SetDone sets the number of processed bytes.
func (j *Job) SetDone(n int64) { j.done.Store(n) }

// SetDetail sets a short human description of what the job is doing now
// ("copying layers", "merging"). Like progress, it is recorded at most
// every FlushInterval; set it per phase, not per I/O.
func (j *Job) SetDetail(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.detail = s
}

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

// Info returns a snapshot, with the rate and ETA as of now.
func (j *Job) Info() Info {
	j.mu.Lock()
	in := Info{ID: j.id, Kind: j.kind, Volume: j.volume, State: j.state,
		Done: j.done.Load(), Total: j.total.Load(), Started: j.started, Detail: j.detail}
	if !j.finished.IsZero() {
		f := j.finished
		in.Finished = &f
	}
	if j.err != nil && j.state == Failed {
		in.Error = j.err.Error()
	}
	j.mu.Unlock()
	estimate(&in, j.now())
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
