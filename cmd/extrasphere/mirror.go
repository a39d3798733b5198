package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/progress"
)

func newMirrorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "mirror",
		Short: "Synchronous mirrors of volumes to another node, an NBD server or a file",
		Long: `A sync mirror acknowledges a write to the VM only after the volume and its
replica both have it, so the replica never lags. The replica is another
Extrasphere node (extrasphere://HOST:PORT/VOL, paired with 'node pair'), any
NBD server (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH), or a raw
file on a mounted datastore (file:///PATH). If the replica is unreachable,
--on-failure degrade keeps the VM running and resyncs what changed when it
returns; block makes writes wait for it.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newMirrorCreateCmd(g), newMirrorStatusCmd(g), newMirrorActionCmd(g, "pause"),
		newMirrorActionCmd(g, "resume"), newMirrorRmCmd(g))
	return c
}

func newMirrorCreateCmd(g *globals) *cobra.Command {
	var o apischema.MirrorOptions
	var wait bool
	c := &cobra.Command{
		Use:   "create VOLUME --to TARGET",
		Short: "Start mirroring a volume (the first copy runs in the background)",
		Example: `  extrasphere mirror create vm1 --to extrasphere://host2:10810/vm1 --mode sync
  extrasphere mirror create vm1 --to nbd+unix:///vm1?socket=/run/qnbd.sock --on-failure block --wait
  extrasphere mirror create vm1 --to file:///mnt/nfs-datastore/vm1.flat`,
		Args: exactArgs("VOLUME"),
		RunE: func(c *cobra.Command, args []string) error {
			o.Volume = args[0]
			if o.Target == "" {
				return &usageError{cmd: c.CommandPath(), err: fmt.Errorf("--to TARGET is required")}
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.CreateMirror(c.Context(), o)
			if err != nil {
				return err
			}
			if wait {
				if in, err = waitInSync(c, g, o.Volume); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "mirror of %s to %s: %s (policy %s); see `extrasphere mirror status %s`\n",
				in.Volume, in.Target, in.State, in.Policy, in.Volume)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Target, "to", "", "replica: extrasphere://HOST:PORT/VOL, nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH or file:///PATH")
	f.StringVar(&o.Mode, "mode", apischema.ModeSync, "replication mode (sync)")
	f.StringVar(&o.Policy, "on-failure", apischema.PolicyDegrade, "when the replica is unreachable: degrade (keep running, resync later) or block (writes wait)")
	f.BoolVar(&o.Insecure, "insecure", false, "allow a plain nbd:// target on another host (no TLS)")
	f.BoolVar(&wait, "wait", false, "wait (with a progress bar) until the replica is in sync")
	return c
}

// waitInSync polls the mirror until it is in sync, drawing the copy.
func waitInSync(c *cobra.Command, g *globals, vol string) (apischema.MirrorInfo, error) {
	cl, err := g.client(c)
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	var bar *progress.Bar
	if !g.json {
		bar = progress.New(g.stderr, "sync "+vol)
	}
	var total int64
	var shown string // the last error already printed
	for {
		ms, err := cl.Mirrors(c.Context(), vol)
		if err != nil {
			return apischema.MirrorInfo{}, err
		}
		if len(ms) == 0 {
			return apischema.MirrorInfo{}, fmt.Errorf("volume %s has no mirror any more", vol)
		}
		in := ms[0]
		total = max(total, in.BytesToSync)
		if bar != nil {
			bar.Update(total-in.BytesToSync, total)
		}
		if !in.Connected && in.LastError != "" && in.LastError != shown && !g.json {
			fmt.Fprintf(g.stderr, "waiting for the replica of %s: %s\n", vol, in.LastError)
			shown = in.LastError
		}
		switch in.State {
		case apischema.MirrorInSync:
			if bar != nil {
				bar.Finish(total, total, "in sync")
			}
			return in, nil
		case apischema.MirrorRefused, apischema.MirrorPaused:
			return in, fmt.Errorf("mirror of %s is %s: %s", vol, in.State, in.LastError)
		}
		select {
		case <-c.Context().Done():
			return in, c.Context().Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func newMirrorStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [VOLUME]",
		Short: "Show mirrors and the replicas this node holds",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			vol := ""
			if len(args) == 1 {
				vol = args[0]
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			ms, err := cl.Mirrors(c.Context(), vol)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ms)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "VOLUME\tROLE\tPEER\tSTATE\tTO SYNC\tSENT\tLAG\tDIVERGED\tSINCE\tLAST ERROR")
			for _, m := range ms {
				peer := m.Target
				if m.Role != apischema.RoleSource {
					peer = "from " + m.Source
				}
				lag, diverged := "-", "-"
				if m.Role == apischema.RoleSource {
					lag = (time.Duration(m.LagSeconds * float64(time.Second))).Round(time.Second).String()
					// Diverged: this side acknowledged writes the replica
					// lacks (recorded durably; a failback checks it).
					diverged = "no"
					if m.Diverged {
						diverged = "yes"
					}
				}
				since := "-"
				if !m.Since.IsZero() {
					since = m.Since.Local().Format(time.DateTime)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Volume, m.Role, peer, m.State,
					progress.FormatBytes(m.BytesToSync), progress.FormatBytes(m.BytesSent), lag, diverged, since, m.LastError)
			}
			return w.Flush()
		},
	}
}

func newMirrorActionCmd(g *globals, action string) *cobra.Command {
	short := "Stop sending to the replica; writes are tracked and resynced on resume"
	if action == "resume" {
		short = "Reconnect a paused or refused mirror and resync what changed"
	}
	return &cobra.Command{
		Use:   action + " VOLUME",
		Short: short,
		Args:  exactArgs("VOLUME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.MirrorAction(c.Context(), args[0], action)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "mirror of %s: %s\n", in.Volume, in.State)
			return nil
		},
	}
}

func newMirrorRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm VOLUME",
		Short: "Stop and forget a volume's mirror (the replica keeps its data)",
		Args:  exactArgs("VOLUME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveMirror(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "mirror of %s removed\n", args[0])
			return nil
		},
	}
}

func newFailoverCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "failover VOLUME",
		Short: "On the replica's node: make the replica a writable, exported volume",
		Long: `Run on the node that holds the replica. The source's stream is cut and refused
from now on; the volume is served read-write here, and what it writes is
tracked so that 'failback' sends only that. Stop the VM on the source first:
while the source is still connected, failover needs --force.`,
		Args: exactArgs("VOLUME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.Failover(c.Context(), args[0], force)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "volume %s failed over: writable here (it was a replica of %s)\n", in.Volume, in.Source)
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "fail over although the source node is still connected")
	return c
}

func newFailbackCmd(g *globals) *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "failback VOLUME",
		Short: "On the failed-over node: mirror the volume back to its old source, sending only what changed",
		Long: `Run where failover ran, once the old source is back with its VM stopped. The old
source's volume becomes the replica; only the blocks written here since
failover, and those the old source wrote that never arrived here, are sent.
If both sides wrote, failback refuses (split brain): see the README.`,
		Args: exactArgs("VOLUME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.Failback(c.Context(), args[0])
			if err != nil {
				return err
			}
			if wait {
				if in, err = waitInSync(c, g, args[0]); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "volume %s mirrors back to %s: %s, %s to send\n", in.Volume, in.Target, in.State, progress.FormatBytes(in.BytesToSync))
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait (with a progress bar) until the old source is in sync")
	return c
}
