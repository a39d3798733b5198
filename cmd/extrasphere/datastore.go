package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/progress"
)

func newDatastoreCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "datastore",
		Short: "Add and list datastores",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	c.AddCommand(newDatastoreAddCmd(g), newDatastoreListCmd(g))
	return c
}

func newDatastoreAddCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME PATH",
		Short: "Add a directory as a datastore",
		Long: `Add the directory PATH (created if needed) as datastore NAME. A directory that
already is an Extrasphere datastore (it has an extrasphere-datastore.json
marker) is adopted with all its volumes, under the name its marker records.`,
		Example: "  extrasphere datastore add nfs1 /mnt/nfs1/extrasphere",
		Args:    exactArgs("NAME", "PATH"),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := absPath(c, args[1])
			if err != nil {
				return err
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			d, err := cl.AddDatastore(c.Context(), args[0], path)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(d)
			}
			fmt.Fprintf(g.stdout, "added datastore %s at %s (%d volume(s))\n", d.Name, d.Path, d.Volumes)
			for _, p := range d.Problems {
				fmt.Fprintf(g.stdout, "  problem: %s\n", p)
			}
			return nil
		},
	}
}

func newDatastoreListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List datastores with their free space",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			list, err := cl.Datastores(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(list)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPATH\tSTATUS\tVOLUMES\tFREE\tTOTAL")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, d.Path, d.Status, d.Volumes,
					progress.FormatBytes(int64(d.Free)), progress.FormatBytes(int64(d.Total)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, d := range list {
				if d.Error != "" {
					fmt.Fprintf(g.stdout, "%s: %s\n", d.Name, d.Error)
				}
				for _, p := range d.Problems {
					fmt.Fprintf(g.stdout, "%s: %s\n", d.Name, p)
				}
			}
			return nil
		},
	}
}
