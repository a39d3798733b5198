package job

import (
	"fmt"
	"strconv"
	"time"

	"github.com/extrasphere/extrasphere/internal/catalog"
)

// Store records jobs; *catalog.Catalog is the daemon's.
type Store interface {
	// AddJob durably records a new job under a new, never reused ID.
	AddJob(j catalog.Job) (catalog.Job, error)
	// PutJobs replaces records in one transaction and prunes old
	// finished ones.
	PutJobs(js []catalog.Job) error
	// Jobs returns every readable record and an error for each other.
	Jobs() (js []catalog.Job, bad []error, err error)
}

var _ Store = (*catalog.Catalog)(nil)

// interruptedPrefix starts the error of an interrupted job.
const interruptedPrefix = "the daemon stopped while the job ran; "

// defaultRecovery ends it when Options.Interrupted says nothing.
const defaultRecovery = "see the jobs started after it for the recovery"

// load reads the recorded jobs into past and marks the running ones
// interrupted, ended at this registry's start.
func (r *Registry) load(hint func(kind, volume string) string) error {
	recs, bad, err := r.store.Jobs()
	if err != nil {
		return err
	}
	for _, b := range bad {
		r.log.Warn("job record skipped", "err", b)
	}
	start := r.now().UTC()
	var marked []catalog.Job
	for _, rec := range recs {
		if rec.State == string(Running) {
			what := ""
			if hint != nil {
				what = hint(rec.Kind, rec.Volume)
			}
			if what == "" {
				what = defaultRecovery
			}
			rec.State, rec.Error = string(Interrupted), interruptedPrefix+what
			rec.Ended = start
			if rec.Ended.Before(rec.Started) { // the clock went back across the restart
				rec.Ended = rec.Started
			}
			marked = append(marked, rec)
			r.log.Warn("job interrupted by the daemon stop", "job", rec.ID, "kind", rec.Kind, "volume", rec.Volume,
				"done_bytes", rec.Done, "total_bytes", rec.Total)
		}
		r.addPastLocked(info(rec))
	}
	if err := r.store.PutJobs(marked); err != nil {
		return fmt.Errorf("mark %d jobs interrupted: %w", len(marked), err)
	}
	return nil
}

// flusher records the progress of running jobs every interval until
// Close.
func (r *Registry) flusher(interval time.Duration) {
	defer close(r.flusherDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.stopFlusher:
			return
		case <-t.C:
			r.flush()
		}
	}
}

// flush records, in one transaction, every running job whose progress or
// detail changed since its last record.
func (r *Registry) flush() {
	r.mu.Lock()
	js := make([]*Job, 0, len(r.live))
	for _, j := range r.live {
		js = append(js, j)
	}
	r.mu.Unlock()

	r.pmu.Lock()
	defer r.pmu.Unlock()
	var recs []catalog.Job
	var changed []*Job
	for _, j := range js {
		in := j.Info()
		// A job that ended is recorded by retire, after this flush
		// (pmu): never write its running state over the final one.
		if in.State != Running || (in.Done == j.savedDone && in.Total == j.savedTotal && in.Detail == j.savedDetail) {
			continue
		}
		recs = append(recs, record(in))
		changed = append(changed, j)
	}
	if len(recs) == 0 {
		return
	}
	if err := r.store.PutJobs(recs); err != nil {
		r.log.Warn("record job progress", "jobs", len(recs), "err", err)
		return
	}
	for i, j := range changed {
		j.savedDone, j.savedTotal, j.savedDetail = recs[i].Done, recs[i].Total, recs[i].Detail
	}
}

// record converts a snapshot to its catalog record.
func record(in Info) catalog.Job {
	id, _ := strconv.ParseUint(in.ID, 10, 64) // the registry issued it from a uint64
	rec := catalog.Job{ID: id, Kind: in.Kind, Volume: in.Volume, State: string(in.State),
		Done: in.Done, Total: in.Total, Started: in.Started, Error: in.Error, Detail: in.Detail}
	if in.Finished != nil {
		rec.Ended = *in.Finished
	}
	return rec
}

// info converts a finished record to a snapshot.
func info(rec catalog.Job) Info {
	in := Info{ID: strconv.FormatUint(rec.ID, 10), Kind: rec.Kind, Volume: rec.Volume, State: State(rec.State),
		Done: rec.Done, Total: rec.Total, Started: rec.Started, Error: rec.Error, Detail: rec.Detail}
	if rec.Finished() {
		e := rec.Ended
		in.Finished = &e
	}
	estimate(&in, rec.Ended)
	return in
}
