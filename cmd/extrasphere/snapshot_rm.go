package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newSnapshotRevertCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revert VOL NAME",
		Short: "Return a volume to a snapshot",
		Long: `Return volume VOL to snapshot NAME: everything written since is discarded
and the snapshot stays. Connected clients stay connected and read the
snapshot's content from their next request, as after a disk swap: stop the
VM (or unmount the disk) first.`,
		Args: exactArgs("VOL", "NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			s, err := cl.RevertSnapshot(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(s)
			}
			fmt.Fprintf(g.stdout, "reverted volume %s to snapshot %s\n", s.Volume, s.Name)
			return nil
		},
	}
}

func newSnapshotRmCmd(g *globals) *cobra.Command {
	var noWait bool
	c := &cobra.Command{
		Use:     "rm VOL NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a snapshot, merging its delta live",
		Long: `Remove snapshot NAME of volume VOL while the volume stays in use: the delta
above the snapshot's layer (what was written until the next snapshot, or
since it for the newest) is merged into that layer by a consolidation job,
then the delta file is deleted. The command shows the job's progress until
it ends (Ctrl-C cancels it; the snapshot is gone either way and the merge
resumes at the next start); with --no-wait it prints the job and returns.`,
		Args: exactArgs("VOL", "NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.RemoveSnapshot(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if noWait {
				if g.json {
					return g.printJSON(j)
				}
				fmt.Fprintf(g.stdout, "started job %s (%s %s); follow it with `extrasphere job show %s`\n", j.ID, j.Kind, j.Volume, j.ID)
				return nil
			}
			if err := followJob(c, g, cl, j, "remove snapshot "+args[1]+" of "+args[0]); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "removed snapshot %s of volume %s\n", args[1], args[0])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&noWait, "no-wait", false, "print the consolidation job and return without waiting")
	return c
}
