package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/progress"
)

func newJobCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "job",
		Short: "List, show and cancel long operations (imports, exports, consolidations)",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	c.AddCommand(newJobListCmd(g), newJobShowCmd(g), newJobCancelCmd(g))
	return c
}

func newJobListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List running jobs and the last finished ones (also of earlier daemon runs), oldest first",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			jobs, err := cl.Jobs(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(jobs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tVOLUME\tSTATE\tPROGRESS\tSTARTED")
			for _, j := range jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, j.Volume, j.State, jobProgress(j), fmtTime(j.Started))
			}
			return tw.Flush()
		},
	}
}

func newJobShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one job",
		Args:  exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Job(c.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(j)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 1, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
			row("ID", j.ID)
			row("Kind", j.Kind)
			row("Volume", j.Volume)
			row("State", string(j.State))
			row("Progress", jobProgress(j))
			if j.Rate > 0 {
				row("Rate", progress.FormatBytes(j.Rate)+"/s")
			}
			if j.ETASeconds != nil {
				row("ETA", fmtETA(*j.ETASeconds))
			}
			if j.Detail != "" {
				row("Detail", j.Detail)
			}
			row("Started", fmtTime(j.Started))
			switch {
			case j.Finished != nil && j.State == job.Interrupted:
				row("Noticed", fmtTime(*j.Finished)+" (when the daemon started again)")
			case j.Finished != nil:
				row("Finished", fmt.Sprintf("%s (took %s)", fmtTime(*j.Finished), j.Finished.Sub(j.Started).Round(time.Millisecond)))
			}
			if j.Error != "" {
				row("Error", j.Error)
			}
			return tw.Flush()
		},
	}
}

func newJobCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Ask a running job to stop",
		Long: `Ask job ID to stop. It ends as "cancelled" shortly after: a cancelled import
removes its volume, an export its file, a migration rolls back. A job that
has ended (done, failed, cancelled, or interrupted by a daemon stop) cannot
be cancelled: the command says how it ended and changes nothing.`,
		Args: exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.CancelJob(c.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(j)
			}
			if j.State != job.Running {
				fmt.Fprintf(g.stdout, "job %s (%s %s) had already ended: %s\n", j.ID, j.Kind, j.Volume, j.State)
				return nil
			}
			fmt.Fprintf(g.stdout, "cancelling job %s (%s %s)\n", j.ID, j.Kind, j.Volume)
			return nil
		},
	}
}

// jobProgress renders a job's progress: "52% (1.0 GiB of 2.0 GiB)", with
// ", ETA 3m20s" while the daemon can estimate it. A done job is 100% even
// when it had nothing to do.
func jobProgress(j job.Info) string {
	pct := 0
	switch {
	case j.State == job.Done, j.Total > 0 && j.Done >= j.Total:
		pct = 100
	case j.Total > 0 && j.Done > 0:
		pct = int(j.Done * 100 / j.Total)
	}
	s := fmt.Sprintf("%d%% (%s of %s)", pct, progress.FormatBytes(j.Done), progress.FormatBytes(j.Total))
	if j.ETASeconds != nil {
		s += ", ETA " + fmtETA(*j.ETASeconds)
	}
	return s
}

// fmtETA renders seconds left: "45s", "3m20s", "1h2m0s".
func fmtETA(secs int64) string { return (time.Duration(secs) * time.Second).String() }

// fmtTime renders a time for tables, in local time.
func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
