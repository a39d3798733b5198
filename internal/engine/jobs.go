package engine

import (
	"context"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/job"
)

// Job kinds.
const (
	KindImport = "import"
	KindExport = "export"
)

// ErrJobNotFound: no job with that ID (re-exported for the API).
var ErrJobNotFound = job.ErrNotFound

// Jobs lists every job of this daemon run, oldest first.
func (e *Engine) Jobs(ctx context.Context) []job.Info { return e.jobs.List() }

// Job returns one job.
func (e *Engine) Job(ctx context.Context, id string) (job.Info, error) {
	j, err := e.jobs.Get(id)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

// CancelJob asks a job to stop and returns its state at once (it becomes
// "cancelled" shortly after).
func (e *Engine) CancelJob(ctx context.Context, id string) (job.Info, error) {
	j, err := e.jobs.Cancel(id)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

// WaitJob waits until a job ends and returns its final state.
func (e *Engine) WaitJob(ctx context.Context, id string) (job.Info, error) {
	j, err := e.jobs.Get(id)
	if err != nil {
		return job.Info{}, err
	}
	if err := j.Wait(ctx); err != nil && ctx.Err() != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

// startJobLocked starts fn as a job on v and registers it there, so the
// volume counts as in use until fn returns. cleanup runs after fn, before
// the job is marked finished, with fn's error; it returns the job's final
// error. Callers hold e.mu.
func (e *Engine) startJobLocked(v *volume, kind string, total int64,
	fn job.Func, cleanup func(err error) error) (*job.Job, error) {
	j, err := e.jobs.Start(kind, v.name, total, func(ctx context.Context, j *job.Job) error {
		err := fn(ctx, j)
		e.mu.Lock()
		delete(v.jobs, j.ID())
		e.mu.Unlock()
		if cleanup != nil {
			err = cleanup(err)
		}
		if err != nil {
			e.log.Warn("job ended", "job", j.ID(), "kind", kind, "volume", v.name, "err", err)
		} else {
			e.log.Info("job done", "job", j.ID(), "kind", kind, "volume", v.name)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s volume %s: %w", kind, v.name, err)
	}
	v.jobs[j.ID()] = j
	return j, nil
}
