package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/progress"
)

func newVolumeShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a volume",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			v, err := cl.GetVolume(c.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(v)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 1, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
			row("Name", v.Name)
			row("Size", fmt.Sprintf("%s (%d bytes)", progress.FormatBytes(v.Size), v.Size))
			row("Allocated", progress.FormatBytes(v.Allocated))
			row("Datastore", v.Datastore)
			row("Descriptor", v.Path)
			row("Flat file", v.FlatPath)
			if len(v.Layers) > 1 {
				row("Top (written)", v.Top)
				row("Chain", fmt.Sprintf("%d layers (base + %d deltas)", len(v.Layers), len(v.Layers)-1))
			}
			if v.Origin != "" {
				row("Linked clone of", v.Origin)
			}
			row("Read-only", fmt.Sprint(v.ReadOnly))
			row("Preallocated", fmt.Sprint(v.Preallocated))
			row("Connections", fmt.Sprint(v.Connections))
			row("Status", v.Status)
			if v.Error != "" {
				row("Error", v.Error)
			}
			if len(v.Jobs) > 0 {
				row("Jobs", strings.Join(v.Jobs, ", "))
			}
			for i, u := range v.Exports {
				if i == 0 {
					row("Exports", u)
				} else {
					fmt.Fprintf(tw, "\t%s\n", u)
				}
			}
			return tw.Flush()
		},
	}
}
