package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func newCloneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "clone VOL[@SNAPSHOT] NEWVOL",
		Short: "Make a linked clone of a volume (live)",
		Long: `Create NEWVOL as a linked clone of VOL: a new delta over the layers VOL had
frozen at SNAPSHOT (without @SNAPSHOT a new snapshot is taken now). The clone
is exported at once and shares VOL's frozen layers read-only, so it costs
only what is written to it. VOL keeps running. While the clone exists those
layers cannot be merged away or removed; 'extrasphere promote NEWVOL' makes
the clone standalone.`,
		Example: `  extrasphere clone vm1-disk0 test1-disk0
  extrasphere clone vm1-disk0@before-upgrade test2-disk0`,
		Args: exactArgs("VOL[@SNAPSHOT]", "NEWVOL"),
		RunE: func(c *cobra.Command, args []string) error {
			src, snap, _ := strings.Cut(args[0], "@")
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.Clone(c.Context(), src, apischema.CloneRequest{Name: args[1], Snapshot: snap})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "created linked clone %s of %s\n", in.Name, args[0])
			for _, u := range in.Exports {
				fmt.Fprintf(g.stdout, "  %s\n", u)
			}
			return nil
		},
	}
}

func newPromoteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote VOL",
		Short: "Make a linked clone standalone (live)",
		Long: `Copy what the linked clone VOL shares with its origin into its own flat file
and cut the link, while the clone keeps running. Afterwards the origin can be
changed or removed freely.`,
		Args: exactArgs("VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Promote(c.Context(), args[0])
			if err != nil {
				return err
			}
			if err := followJob(c, g, cl, j, "promote "+args[0]); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "volume %s is standalone\n", args[0])
			}
			return nil
		},
	}
}

func newMigrateCmd(g *globals) *cobra.Command {
	var to, rate string
	c := &cobra.Command{
		Use:   "migrate VOL --to DATASTORE",
		Short: "Move a running volume to another datastore (live)",
		Long: `Move VOL's files to DATASTORE while its VM keeps running on the same NBD
connection: a snapshot redirects writes to a new delta, the frozen layers are
copied (at most --rate bytes per second), the delta is merged into the copy
while the VM writes, and I/O is held only for the final switch. Snapshots come
along. Ctrl-C cancels and rolls back; so does a crash before the switch, and a
crash after it finishes the move at the next start.`,
		Example: `  extrasphere migrate vm1-disk0 --to nfs-fast
  extrasphere migrate vm1-disk0 --to nfs-fast --rate 200M`,
		Args: exactArgs("VOL"),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return usagef(c.CommandPath(), "--to DATASTORE is required")
			}
			var bps int64
			if rate != "" {
				n, err := parseSize(rate)
				if err != nil || n <= 0 {
					return usagef(c.CommandPath(), "--rate %q: want a size per second such as 200M", rate)
				}
				bps = n
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Migrate(c.Context(), args[0], apischema.MigrateRequest{Datastore: to, Rate: bps})
			if err != nil {
				return err
			}
			if err := followJob(c, g, cl, j, "migrate "+args[0]); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "volume %s is now on datastore %s\n", args[0], to)
			}
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "target datastore (required)")
	c.Flags().StringVar(&rate, "rate", "", "copy at most this many bytes per second, e.g. 200M (default unlimited)")
	return c
}
