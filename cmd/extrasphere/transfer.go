package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/api"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/progress"
)

// pollInterval is how often the CLI asks the daemon for job progress.
const pollInterval = 200 * time.Millisecond

// absPath makes a CLI path absolute: the daemon opens it, from another
// working directory.
func absPath(c *cobra.Command, p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", usagef(c.CommandPath(), "path %s: %v", p, err)
	}
	return a, nil
}

// followJob shows a job's progress until it ends. On Ctrl-C it cancels the
// job in the daemon. It fails unless the job is done.
func followJob(c *cobra.Command, g *globals, cl *api.Client, j job.Info, label string) error {
	var bar *progress.Bar
	if !g.json {
		bar = progress.New(g.stderr, label)
	}
	final, err := cl.WaitJob(c.Context(), j.ID, pollInterval, func(in job.Info) {
		if bar != nil && in.State == job.Running {
			bar.Update(in.Done, in.Total)
		}
	})
	if errors.Is(err, context.Canceled) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, cerr := cl.CancelJob(ctx, j.ID); cerr != nil {
			return fmt.Errorf("interrupted; cancelling job %s failed: %w", j.ID, cerr)
		}
		final, err = cl.WaitJob(ctx, j.ID, pollInterval, nil)
		if err != nil {
			return fmt.Errorf("interrupted; job %s cancelled", j.ID)
		}
	} else if err != nil {
		return err
	}
	if g.json {
		if err := g.printJSON(final); err != nil {
			return err
		}
	} else {
		bar.Finish(final.Done, final.Total, string(final.State))
	}
	switch final.State {
	case job.Done:
		return nil
	case job.Cancelled:
		return fmt.Errorf("job %s (%s %s) was cancelled", final.ID, final.Kind, final.Volume)
	default:
		return errors.New(final.Error)
	}
}
