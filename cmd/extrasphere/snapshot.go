package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Create, list, revert and remove snapshots of volumes",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	c.AddCommand(newSnapshotCreateCmd(g), newSnapshotListCmd(g), newSnapshotRevertCmd(g), newSnapshotRmCmd(g))
	return c
}

func newSnapshotCreateCmd(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "create VOL [VOL...]",
		Short: "Snapshot one volume, or several at one instant",
		Long: `Take a crash-consistent snapshot of each volume while it stays in use: the
current state is frozen and new writes go to a new delta file. With several
volumes (the disks of one VM) all are captured at the same instant: a write
acknowledged on any of them before the snapshot is in it, none after.
Without --name the snapshot is called snap-YYYYMMDD-HHMMSS (UTC).`,
		Example: `  extrasphere snapshot create vm1-disk0 --name before-upgrade
  extrasphere snapshot create vm1-disk0 vm1-disk1 --name nightly`,
		Args: minArgs(1, "VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			snaps, err := cl.CreateSnapshot(c.Context(), args, name)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(snaps)
			}
			vols := make([]string, len(snaps))
			for i, s := range snaps {
				vols[i] = s.Volume
			}
			if len(snaps) == 0 {
				return fmt.Errorf("the daemon created no snapshot of %s", strings.Join(args, ", "))
			}
			if len(vols) == 1 {
				fmt.Fprintf(g.stdout, "created snapshot %s of volume %s\n", snaps[0].Name, vols[0])
			} else {
				fmt.Fprintf(g.stdout, "created snapshot %s of volumes %s at one instant\n", snaps[0].Name, strings.Join(vols, ", "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "snapshot name (default snap-YYYYMMDD-HHMMSS)")
	return c
}

func newSnapshotListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list VOL",
		Aliases: []string{"ls"},
		Short:   "List a volume's snapshots, oldest first",
		Args:    exactArgs("VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			snaps, err := cl.Snapshots(c.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(snaps)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tLAYER")
			for _, s := range snaps {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Created.Local().Format("2006-01-02 15:04:05"), s.Layer)
			}
			return tw.Flush()
		},
	}
}

// minArgs requires at least n positional arguments, named in the message.
func minArgs(n int, name string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef(c.CommandPath(), "%s needs at least %d %s argument(s), got %d", c.CommandPath(), n, name, len(args))
		}
		return nil
	}
}
