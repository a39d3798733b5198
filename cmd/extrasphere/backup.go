package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/progress"
)

func newBackupCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "backup",
		Short: "Back up volumes into a repository, list, verify and prune backups",
		Long: `A backup is taken from a snapshot, so the VMs keep running and the image is
crash-consistent; the volumes of one run share one instant. The first backup
of a volume reads all of it; the next ones read only the 64 KiB blocks its
changed-block tracking recorded since the previous backup (a bitmap named
backup-REPO, enabled by the first backup). Every backup is logically full:
restore and prune never walk a chain. See also: extrasphere repo, restore.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newBackupRunCmd(g), newBackupListCmd(g), newBackupVerifyCmd(g), newBackupPruneCmd(g), newBackupServeCmd(g))
	return c
}

func newBackupRunCmd(g *globals) *cobra.Command {
	var req apischema.BackupRequest
	var noWait bool
	c := &cobra.Command{
		Use:     "run VOL...",
		Short:   "Back up volumes at one instant (incremental from CBT after the first)",
		Example: "  extrasphere backup run vm1-disk0 vm1-disk1\n  extrasphere backup run vm1-disk0 --repo offsite --full",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req.Volumes = args
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Backup(c.Context(), req)
			if err != nil {
				return err
			}
			if noWait {
				if g.json {
					return g.printJSON(j)
				}
				fmt.Fprintf(g.stdout, "started job %s (backup %s); follow it with `extrasphere job show %s`\n", j.ID, j.Volume, j.ID)
				return nil
			}
			if err := followJob(c, g, cl, j, "backup "+strings.Join(args, " ")); err != nil {
				return err
			}
			if !g.json {
				final, err := cl.Job(c.Context(), j.ID)
				if err == nil {
					fmt.Fprintln(g.stdout, final.Detail)
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&req.Repo, "repo", "", "repository (default: default)")
	c.Flags().BoolVar(&req.Full, "full", false, "read every block, even when changed-block tracking could say what changed")
	c.Flags().BoolVar(&noWait, "no-wait", false, "print the job and return without waiting")
	return c
}

func newBackupListCmd(g *globals) *cobra.Command {
	var repo string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the backups of a repository",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			bs, err := cl.Backups(c.Context(), repo)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(bs)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTIME\tVOLUMES\tSIZE\tNEW")
			for _, b := range bs {
				var names []string
				var size int64
				for _, v := range b.Volumes {
					names = append(names, v.Name)
					size += v.Size
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", b.ID, fmtTime(b.Time), strings.Join(names, ","),
					progress.FormatBytes(size), progress.FormatBytes(b.Stats.BytesStored))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&repo, "repo", "", "repository (default: default)")
	return c
}

func newBackupVerifyCmd(g *globals) *cobra.Command {
	var req apischema.VerifyRequest
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check that every backup is complete (--read-data: and that every byte is intact)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			rep, err := cl.VerifyBackups(c.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(g.stdout, "PROBLEM: "+p)
				}
				r := rep.Result
				fmt.Fprintf(g.stdout, "%d backups, %d chunks referenced, %d read and checked, %d missing, %d corrupt, %d unreferenced\n",
					r.Backups, r.Chunks, r.ChunksRead, r.MissingChunks, r.CorruptChunks, r.Unreferenced)
			}
			if len(rep.Problems) > 0 {
				return fmt.Errorf("verify found %d problems: do not trust the backups named above", len(rep.Problems))
			}
			return nil
		},
	}
	c.Flags().StringVar(&req.Repo, "repo", "", "repository (default: default)")
	c.Flags().BoolVar(&req.ReadData, "read-data", false, "read and check every chunk, not only that it exists")
	return c
}

func newBackupPruneCmd(g *globals) *cobra.Command {
	var req apischema.PruneRequest
	c := &cobra.Command{
		Use:     "prune",
		Short:   "Forget the backups no --keep-* rule keeps and free their space",
		Example: "  extrasphere backup prune --keep-last 3 --keep-daily 7 --keep-weekly 4",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			rep, err := cl.PruneBackups(c.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rep)
			}
			for _, b := range rep.Keep {
				fmt.Fprintf(g.stdout, "keep   %s  %s  (%s)\n", b.ID, fmtTime(b.Time), strings.Join(b.Keep, ", "))
			}
			for _, b := range rep.Forget {
				fmt.Fprintf(g.stdout, "forget %s  %s\n", b.ID, fmtTime(b.Time))
			}
			if rep.Stats != nil {
				fmt.Fprintf(g.stdout, "removed %d backups and %d chunks (%s)\n", rep.Stats.BackupsDeleted, rep.Stats.ChunksDeleted,
					progress.FormatBytes(rep.Stats.BytesDeleted))
			} else {
				fmt.Fprintln(g.stdout, "dry run: nothing removed")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Repo, "repo", "", "repository (default: default)")
	f.IntVar(&req.KeepLast, "keep-last", 0, "keep the N newest backups")
	f.IntVar(&req.KeepHourly, "keep-hourly", 0, "keep the newest backup of each of the last N hours")
	f.IntVar(&req.KeepDaily, "keep-daily", 0, "keep the newest backup of each of the last N days")
	f.IntVar(&req.KeepWeekly, "keep-weekly", 0, "keep the newest backup of each of the last N weeks")
	f.IntVar(&req.KeepMonthly, "keep-monthly", 0, "keep the newest backup of each of the last N months")
	f.IntVar(&req.KeepYearly, "keep-yearly", 0, "keep the newest backup of each of the last N years")
	f.BoolVar(&req.DryRun, "dry-run", false, "only print what would be kept and forgotten")
	return c
}

func newRestoreCmd(g *globals) *cobra.Command {
	var req apischema.RestoreRequest
	var noWait bool
	c := &cobra.Command{
		Use:   "restore BACKUP (--to FILE | --volume NEWVOL)",
		Short: "Restore a volume of a backup into a new raw file or a new volume",
		Example: "  extrasphere restore 20261125-0210 --to /tmp/vm1-disk0.raw\n" +
			"  extrasphere restore 20261125-0210 --source vm1-disk1 --volume vm1-disk1-restored --datastore fast",
		Args: exactArgs("BACKUP"),
		RunE: func(c *cobra.Command, args []string) error {
			req.Backup = args[0]
			if req.ToFile != "" {
				abs, err := filepath.Abs(req.ToFile)
				if err != nil {
					return err
				}
				req.ToFile = abs
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Restore(c.Context(), req)
			if err != nil {
				return err
			}
			if noWait {
				if g.json {
					return g.printJSON(j)
				}
				fmt.Fprintf(g.stdout, "started job %s (restore %s); follow it with `extrasphere job show %s`\n", j.ID, j.Volume, j.ID)
				return nil
			}
			target := req.ToFile
			if target == "" {
				target = "volume " + req.ToVolume
			}
			if err := followJob(c, g, cl, j, "restore "+j.Volume); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "restored %s of backup %s to %s\n", j.Volume, req.Backup, target)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Repo, "repo", "", "repository (default: default)")
	f.StringVar(&req.Volume, "source", "", "the volume of the backup to restore (needed when it holds several)")
	f.StringVar(&req.ToFile, "to", "", "restore into this new raw file")
	f.StringVar(&req.ToVolume, "volume", "", "restore into this new volume")
	f.StringVar(&req.Datastore, "datastore", "", "datastore of the new volume (default: default)")
	f.BoolVar(&noWait, "no-wait", false, "print the job and return without waiting")
	return c
}

func newBackupServeCmd(g *globals) *cobra.Command {
	var req apischema.ServeRequest
	c := &cobra.Command{
		Use:   "serve BACKUP NEWVOL",
		Short: "Instant restore: serve a backup volume as a new volume at once",
		Long: `Create volume NEWVOL from a backup and serve it at once: reads come from the
repository (chunks are fetched as they are read), writes go to a delta in
NEWVOL's directory. Attach it to a VM right away; then run
` + "`extrasphere promote NEWVOL`" + ` to copy the backup into the volume's own flat file while
it runs, after which it no longer needs the repository. Until promoted, the
repository must stay reachable and the backup must not be pruned (its read
lock keeps a prune from deleting it).`,
		Example: "  extrasphere backup serve 20261125-0210 vm1-disk0-restored\n  extrasphere promote vm1-disk0-restored",
		Args:    exactArgs("BACKUP", "NEWVOL"),
		RunE: func(c *cobra.Command, args []string) error {
			req.Backup, req.Name = args[0], args[1]
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.ServeBackup(c.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "serving backup %s as volume %s at %s\nrun `extrasphere promote %s` to copy it home\n",
				req.Backup, in.Name, strings.Join(in.Exports, " and "), in.Name)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Repo, "repo", "", "repository (default: default)")
	f.StringVar(&req.Volume, "source", "", "the volume of the backup (needed when it holds several)")
	f.StringVar(&req.Datastore, "datastore", "", "datastore of the new volume (default: default)")
	return c
}
