package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/job"
)

// Job kinds.
const (
	KindImport = "import"
	KindExport = "export"
)

// ErrJobNotFound: no job with that ID (re-exported for the API).
var ErrJobNotFound = job.ErrNotFound

// jobOptions configure the engine's job registry: jobs are recorded in
// the catalog, so they are listed across restarts.
func jobOptions(cat *catalog.Catalog, log *slog.Logger) job.Options {
	return job.Options{Store: cat, Logger: log, Interrupted: interruptedHint}
}

// interruptedHint says what the daemon does, or the operator must do,
// after a job of that kind was interrupted by a daemon stop; it completes
// "the daemon stopped while the job ran; ...".
func interruptedHint(kind, volume string) string {
	switch kind {
	case KindImport:
		return fmt.Sprintf("volume %s is not served: remove it with `extrasphere volume rm %s` and import again", volume, volume)
	case KindExport:
		return "the target file may be incomplete: delete it and export again"
	case chainops.KindConsolidate:
		return "the merge resumed as a new consolidate job on the volume"
	case chainops.KindMigrate:
		return "at restart a migration that had reached its commit point was finished, an earlier one rolled back (a new consolidate job merges its delta)"
	case chainops.KindPromote:
		return fmt.Sprintf("if volume %s still shows a base it does not own, run `extrasphere promote %s` again", volume, volume)
	}
	return ""
}

// Jobs lists the running jobs and the last finished ones (also of earlier
// daemon runs), oldest first.
func (e *Engine) Jobs(ctx context.Context) []job.Info { return e.jobs.List() }

// Job returns one job, running or finished.
func (e *Engine) Job(ctx context.Context, id string) (job.Info, error) { return e.jobs.Info(id) }

// CancelJob asks a job to stop and returns its state at once (it becomes
// "cancelled" shortly after). A job that has ended is returned as it is.
func (e *Engine) CancelJob(ctx context.Context, id string) (job.Info, error) {
	return e.jobs.Cancel(id)
}

// WaitJob waits until a job ends and returns its final state.
func (e *Engine) WaitJob(ctx context.Context, id string) (job.Info, error) {
	return e.jobs.Wait(ctx, id)
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
