package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/progress"
)

func newVolumeListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List volumes",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			vols, err := cl.ListVolumes(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(vols)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tALLOCATED\tDATASTORE\tMODE\tCONNS\tSTATUS")
			for _, v := range vols {
				mode := "rw"
				if v.ReadOnly {
					mode = "ro"
				}
				status := v.Status
				if len(v.Jobs) > 0 {
					status += " (job " + v.Jobs[0] + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Name, progress.FormatBytes(v.Size),
					progress.FormatBytes(v.Allocated), v.Datastore, mode, v.Connections, status)
			}
			return tw.Flush()
		},
	}
}
