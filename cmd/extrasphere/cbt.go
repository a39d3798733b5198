package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/progress"
)

func newCBTCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "cbt",
		Short: "Changed-block tracking: named dirty bitmaps of a volume",
		Long: `Changed-block tracking records which 64 KiB blocks of a volume are written, in
named bitmaps that survive restarts and crashes (after a crash a bitmap may
show more blocks than were written, never fewer). Each bitmap is served over
NBD as the meta context qemu:dirty-bitmap:NAME, so backup tools read exactly
the changed extents:

  nbdinfo --map=qemu:dirty-bitmap:cbt 'nbd+unix:///VOL?socket=DATA/nbd.sock'

A bitmap is visible to NBD connections made after it is enabled.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newCBTEnableCmd(g), newCBTListCmd(g), newCBTClearCmd(g), newCBTRmCmd(g))
	return c
}

func newCBTEnableCmd(g *globals) *cobra.Command {
	var bitmap string
	c := &cobra.Command{
		Use:     "enable VOL",
		Short:   "Start recording the writes to a volume in a new bitmap",
		Example: "  extrasphere cbt enable vm1-disk0\n  extrasphere cbt enable vm1-disk0 --bitmap nightly",
		Args:    exactArgs("VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.EnableCBT(c.Context(), args[0], bitmap)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "enabled bitmap %s on volume %s (NBD meta context %s)\n", in.Name, args[0], in.MetaContext)
			return nil
		},
	}
	c.Flags().StringVar(&bitmap, "bitmap", "cbt", "bitmap name")
	return c
}

func newCBTListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list VOL",
		Aliases: []string{"ls"},
		Short:   "List a volume's bitmaps and how much each has recorded",
		Args:    exactArgs("VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.CBT(c.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			for _, p := range in.Problems {
				fmt.Fprintf(g.stderr, "warning: volume %s: %s\n", args[0], p)
			}
			if in.Recovered {
				fmt.Fprintf(g.stderr, "note: the daemon did not stop cleanly; blocks hot at the time count as changed\n")
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BITMAP\tCHANGED\tCREATED\tMETA CONTEXT")
			for _, b := range in.Bitmaps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Name, progress.FormatBytes(b.DirtyBytes),
					b.Created.Local().Format("2006-01-02 15:04:05"), b.MetaContext)
			}
			return tw.Flush()
		},
	}
}

func newCBTClearCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "clear VOL BITMAP",
		Short: "Reset a bitmap to no changes (it records from now on)",
		Long: `Reset a bitmap so that it records the writes made from this instant on, as a
backup tool does after it has copied the changed blocks. The bitmap stays.`,
		Args: exactArgs("VOL", "BITMAP"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.ClearCBT(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "cleared bitmap %s of volume %s\n", args[1], args[0])
			return nil
		},
	}
}

func newCBTRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm VOL BITMAP",
		Short: "Stop tracking in a bitmap and forget it",
		Args:  exactArgs("VOL", "BITMAP"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveCBT(c.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed bitmap %s of volume %s\n", args[1], args[0])
			return nil
		},
	}
}
