package chainops

import (
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fsx"
	"golang.org/x/sys/unix"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/sparse"
	"github.com/extrasphere/extrasphere/internal/transfer"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// KindMigrate is the job kind of a live storage migration.
const KindMigrate = "migrate"

// migratedFrom is the marker a migrated volume's new directory carries
// until the old directory is gone: it names the old directory, so a
// restart that finds both knows the new one is complete and wins.
const migratedFrom = ".migrated-from"

// migrateSnapPrefix names the snapshot a migration takes; one left by a
// crash is merged away at the next start (the migration rolls back).
const migrateSnapPrefix = "migrate-"

// Migrate moves a running volume to another datastore (the seed's trick,
// inside the daemon): snapshot, so writes go to a new delta; copy the
// frozen layers to the target (at most rate bytes/s when rate > 0); switch
// reads to the copies; merge the delta into the copied top layer while the
// VM keeps writing; then, with I/O held for the last grains only, make the
// target directory the volume and drop the old one. The VM's NBD
// connection never changes. It runs as a job; cancel rolls back.
func (s *Service) Migrate(ctx context.Context, vol, to string, rate int64) (job.Info, error) {
	vs, unlock, err := s.LockVolumes([]string{vol}, "migrate")
	if err != nil {
		return job.Info{}, err
	}
	v := vs[0]
	s.host.Lock()
	tgt, err := s.host.DatastoreLocked(to)
	switch {
	case err != nil:
	case tgt.Name == v.Datastore().Name:
		err = errorf(errkind.ErrInvalidArgument, "volume %s is already on datastore %s", vol, to)
	case !v.Files().Chain.BaseOwn:
		err = errorf(errkind.ErrInvalidArgument, "volume %s is a linked clone: promote it before migrating", vol)
	case v.Filling() != nil:
		err = errorf(errkind.ErrInvalidArgument, "volume %s is served from a backup: promote it before migrating", vol)
	}
	s.host.Unlock()
	if err == nil {
		err = s.refuseShared(v, "migrate", layersOf(v))
	}
	if err != nil {
		unlock()
		return job.Info{}, err
	}
	j, err := s.startHeld(v, KindMigrate, 0, unlock, nil, func(ctx context.Context, j *job.Job) error {
		return s.migrate(ctx, v, tgt, rate, j)
	})
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

// migrate runs the steps; v.snapMu is held. Each step that changes
// something registers how to undo it; on failure they run newest first
// (the merge is aborted, reads go back to the original layers, the copies
// are closed, the target copy is deleted and the snapshot merged back), so
// the volume ends as it began.
func (s *Service) migrate(ctx context.Context, v Vol, tgt Datastore, rate int64, j *job.Job) (err error) {
	start := time.Now()
	snap := migrateSnapPrefix + j.ID()
	if err := v.Gate().Flush(ctx); err != nil { // so the flush under the hold is short
		return fmt.Errorf("migrate %s: flush: %w", v.Name(), err)
	}
	if _, err = s.snapshotOne(ctx, v, snap, start); err != nil {
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	var st *datastore.Staged
	undo = append(undo, func() { s.rollbackMigration(v, snap, tgt, st) })
	s.host.Step("migrate.after-snapshot")
	src := v.Layers().(*chain.Chain)
	ls := layersOf(v)
	frozen := ls[:len(ls)-1]

	j.SetDetail("copying the frozen layers to datastore " + tgt.Name)
	if st, err = tgt.DS.Stage(v.Name()); err != nil {
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}
	copies, err := s.copyLayers(ctx, v, frozen, st.Dir, rate, j)
	if err != nil {
		return fmt.Errorf("migrate %s: copy to datastore %s: %w", v.Name(), tgt.Name, err)
	}
	undo = append(undo, copies.close)
	copies.src.base, copies.src.deltas = src.Layers()
	s.host.Step("migrate.after-copy")

	// Reads move to the copies: same bytes, other files. Nothing on disk
	// changes, so a crash here still finds the old chain complete.
	moved, err := s.switchReads(v, src, copies)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}
	undo = append(undo, func() { s.restoreSource(v, src, moved) })
	s.host.Step("migrate.after-switch-reads")

	j.SetDetail("merging the writes made during the copy")
	m := chain.NewMerger(moved)
	undo = append(undo, m.Abort)
	grain := int64(moved.Caps().PrefBlock)
	j.SetTotal(j.Info().Total + m.Grains()*grain)
	base := j.Info().Done
	progress := func(n int64) {
		if d := base + n*grain; d > j.Info().Total {
			j.SetTotal(d) // re-copies of grains written meanwhile
			j.SetDone(d)
		} else {
			j.SetDone(d)
		}
	}
	if _, err := m.Copy(ctx, 16, 8, progress); err != nil {
		return fmt.Errorf("migrate %s: merge: %w", v.Name(), err)
	}
	if err := m.Settle(ctx); err != nil {
		return fmt.Errorf("migrate %s: merge: %w", v.Name(), err)
	}
	s.host.Step("migrate.after-merge-copy")
	// Before the hold, so it stays short: the copied top layer drops the
	// migration snapshot's name, and the marker that makes the new
	// directory win after a commit goes in (durably; the commit fsyncs
	// the directory).
	err = copies.topLayer().setSnapshot("", time.Time{})
	if err == nil {
		err = fsx.WriteNew(filepath.Join(st.Dir, migratedFrom), []byte(dirOf(v)+"\n"))
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}

	j.SetDetail("switching to the new copy")
	p, err := v.BeginPivot()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}
	stall, err := s.pivotMigration(ctx, v, tgt, st, m, copies, p)
	if err != nil {
		p.End() // before the undo steps, which hold I/O themselves
		return fmt.Errorf("migrate %s: %w", v.Name(), err)
	}
	s.log.Info("volume migrated", "volume", v.Name(), "to", tgt.Name, "took", time.Since(start).Round(time.Millisecond), "io_held", stall)
	return nil
}

// switchReads moves reads to the copies. The chain is built with I/O held:
// the owner map must see every grain the top delta has allocated. Rebase
// keeps the top's write masks, so the merge that follows copies only the
// parts written since the snapshot.
func (s *Service) switchReads(v Vol, src *chain.Chain, copies *layerCopies) (*chain.Chain, error) {
	p, err := v.BeginPivot()
	if err != nil {
		return nil, err
	}
	defer p.End()
	c, err := chain.Rebase(src, copies.base, copies.deltas)
	if err != nil {
		return nil, err
	}
	p.Install(c, nil)
	p.Commit()
	return c, nil
}

// pivotMigration runs in the pivot p (I/O held): finish the merge, make
// the target directory the volume, drop the old one, install the new
// stack, end p. Every step that can fail comes before the commit (the
// rename of the staging directory); after it the new directory is the
// volume and nothing rolls back. On failure p is still held.
func (s *Service) pivotMigration(ctx context.Context, v Vol, tgt Datastore, st *datastore.Staged, m *chain.Merger,
	copies *layerCopies, p Pivot) (time.Duration, error) {
	if err := m.Finish(ctx); err != nil {
		return 0, err
	}
	nd, err := m.Without()
	if err != nil {
		return 0, err
	}
	oldDir := dirOf(v)
	newDir := tgt.DS.VolumeDir(v.Name())
	files := v.Files()
	files.DescriptorPath = filepath.Join(newDir, filepath.Base(copies.baseDesc))
	files.FlatPath = filepath.Join(newDir, filepath.Base(files.FlatPath))
	files.Chain.Base = files.DescriptorPath
	files.Chain.Deltas = nil
	for _, p := range copies.paths {
		files.Chain.Deltas = append(files.Chain.Deltas, filepath.Join(newDir, filepath.Base(p)))
	}
	files.Chain.Own = len(files.Chain.Deltas)
	s.host.Step("migrate.before-commit")
	if err := tgt.DS.Commit(st); err != nil {
		return 0, err
	}
	s.host.Step("migrate.after-commit")
	oldDS := v.Datastore()
	p.Move(nd, files, tgt)
	p.Commit()
	stall := p.End()
	// The old copy is no longer read: close and remove it in the
	// background (freeing a large file takes seconds). A crash before
	// that ends is finished at the next start through the marker.
	srcChain := copies.src
	s.host.Background(func() {
		for _, d := range srcChain.deltas {
			d.Close()
		}
		srcChain.base.Close()
		if err := oldDS.DS.RemoveVolume(v.Name()); err != nil {
			s.log.Error("migrated: could not remove the old copy; remove it by hand", "volume", v.Name(), "dir", oldDir, "err", err)
		}
		s.host.Step("migrate.after-remove-old")
		if err := os.Remove(filepath.Join(newDir, migratedFrom)); err != nil {
			s.log.Warn("remove migration marker", "volume", v.Name(), "err", err)
		}
		if err := datastore.SyncDir(newDir); err != nil {
			s.log.Warn("sync migrated volume dir", "volume", v.Name(), "err", err)
		}
	})
	return stall, nil
}

// restoreSource puts the original layers back under the gate after reads
// moved to the copies (moved): a chain of src's lower layers with moved's
// top and owner map, which knows every grain the top allocated since
// (src's own map does not).
func (s *Service) restoreSource(v Vol, src, moved *chain.Chain) {
	err := func() error {
		p, err := v.BeginPivot()
		if err != nil {
			return err
		}
		defer p.End()
		b, ds := src.Layers()
		c, err := chain.Rebase(moved, b, ds[:len(ds)-1])
		if err != nil { // cannot happen: src and moved have the same shape
			return err
		}
		p.Install(c, nil)
		p.Commit()
		return nil
	}()
	if err != nil {
		s.log.Error("migration rollback: put the original layers back", "volume", v.Name(), "err", err)
	}
}

// rollbackMigration deletes the target copy and merges the migration's
// snapshot delta back, so the volume ends as it began.
func (s *Service) rollbackMigration(v Vol, snap string, tgt Datastore, st *datastore.Staged) {
	if st != nil {
		tgt.DS.Abort(st)
	}
	s.host.Lock()
	closing := s.host.ClosedLocked()
	s.host.Unlock()
	if closing {
		// Shutting down: the merge back could take long; the next start
		// does it (ResumeMerges sees the migrate-* snapshot).
		s.log.Warn("migration stopped by shutdown: it rolls back at the next start", "volume", v.Name())
		return
	}
	if err := s.mergeNewest(context.Background(), v, snap); err != nil {
		s.log.Error("migration rollback: merge the migration snapshot back", "volume", v.Name(), "snapshot", snap, "err", err)
	}
}

// layerCopies are the copied frozen layers, open, in the staging dir.
type layerCopies struct {
	base     blockdev.Device
	baseDesc string
	deltas   []chain.Delta
	paths    []string

	// src are the layers copied from (and the live delta above them),
	// closed once the migration has switched away from them.
	src struct {
		base   blockdev.Device
		deltas []chain.Delta
	}
}

func (c *layerCopies) close() {
	for _, d := range c.deltas {
		d.Close()
	}
	if c.base != nil {
		c.base.Close()
	}
}

func (c *layerCopies) topLayer() layer {
	if n := len(c.deltas); n > 0 {
		return layer{path: c.paths[n-1], delta: c.deltas[n-1].(chain.SparseDelta).Extent}
	}
	return layer{path: c.baseDesc}
}

// copyLayers copies the frozen layers into dir under their own names, so
// the deltas' relative parent hints and CIDs stay valid, and opens them.
func (s *Service) copyLayers(ctx context.Context, v Vol, frozen []layer, dir string, rate int64, j *job.Job) (*layerCopies, error) {
	var total int64
	for _, l := range frozen[1:] {
		if fi, err := os.Stat(l.path); err == nil {
			total += fi.Size()
		}
	}
	j.SetTotal(total + v.Files().Size)
	c := &layerCopies{baseDesc: filepath.Join(dir, filepath.Base(frozen[0].path))}
	lim := transfer.NewLimiter(rate)
	// The base: a new sparse flat with the same descriptor text, and the
	// frozen flat's data ranges copied in by the kernel.
	if err := flat.Create(c.baseDesc, v.Files().Size, flat.CreateOptions{}); err != nil {
		return nil, err
	}
	dstFlat, err := flat.FlatPath(c.baseDesc)
	if err != nil {
		return nil, err
	}
	if err := copyFileData(ctx, v.Files().FlatPath, dstFlat, v.Files().Size, lim, j.SetDone); err != nil {
		return nil, err
	}
	if err := copyDescriptor(frozen[0].path, c.baseDesc); err != nil {
		return nil, err
	}
	nb, err := flat.Open(c.baseDesc, flat.Options{})
	if err != nil {
		return nil, err
	}
	c.base = nb
	done := v.Files().Size
	for _, l := range frozen[1:] {
		dst := filepath.Join(dir, filepath.Base(l.path))
		n, err := copyFile(ctx, l.path, dst, lim, func(k int64) { j.SetDone(done + k) })
		if err != nil {
			c.close()
			return nil, err
		}
		done += n
		j.SetDone(done)
		ext, err := sparse.Open(dst, false)
		if err != nil {
			c.close()
			return nil, err
		}
		c.deltas = append(c.deltas, chain.SparseDelta{Extent: ext})
		c.paths = append(c.paths, dst)
	}
	if err := datastore.SyncDir(dir); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// copyDescriptor replaces dst's descriptor text with src's (same CID, same
// disk database), keeping dst's own extent line.
func copyDescriptor(src, dst string) error {
	sb, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	sd, err := vmdk.Parse(sb)
	if err != nil {
		return err
	}
	db, err := os.ReadFile(dst)
	if err != nil {
		return err
	}
	dd, err := vmdk.Parse(db)
	if err != nil {
		return err
	}
	sd.Extents = dd.Extents
	return vmdk.WriteFileAtomic(dst, sd.Marshal())
}

// copyFile copies a frozen file into a new one, keeping holes, and
// fsyncs it. It returns the file's size.
func copyFile(ctx context.Context, src, dst string, lim *transfer.Limiter, progress func(int64)) (int64, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return 0, err
	}
	err = out.Truncate(fi.Size())
	out.Close()
	if err != nil {
		return 0, err
	}
	return fi.Size(), copyFileData(ctx, src, dst, fi.Size(), lim, progress)
}

// copyFileData copies the data ranges of src into dst, an existing file
// that reads as zeros where src has holes, and fdatasyncs dst.
func copyFileData(ctx context.Context, src, dst string, size int64, lim *transfer.Limiter, progress func(int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := fsx.OpenDirect(dst) // around the page cache: the VMs' writes are not throttled
	if err != nil {
		return err
	}
	defer out.Close()
	var done int64
	if err := fsx.CopyData(ctx, out, in, size, copyFileChunk, lim.Wait, func(n int64) {
		done += n
		if progress != nil {
			progress(done)
		}
	}); err != nil {
		return err
	}
	if err := unix.Fdatasync(int(out.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return nil
}

// copyFileChunk is the piece copyFileData hands to copy_file_range: large,
// so the kernel streams, and small enough for --rate to pace it smoothly.
const copyFileChunk = 8 << 20

// FinishMigrations completes migrations a crash interrupted after their
// commit: a volume directory with a migratedFrom marker is complete, so
// the old directory it names is removed. The engine runs it at open,
// before it scans the datastores (dss: every online one).
func (s *Service) FinishMigrations(dss []*datastore.Datastore) {
	for _, ds := range dss {
		dirs, _ := filepath.Glob(filepath.Join(ds.Path, "*", migratedFrom))
		for _, marker := range dirs {
			b, err := os.ReadFile(marker)
			if err != nil {
				continue
			}
			old := strings.TrimSpace(string(b))
			vol := filepath.Base(filepath.Dir(marker))
			for _, o := range dss {
				if o.VolumeDir(vol) == old {
					if err := o.RemoveVolume(vol); err != nil && !errors.Is(err, os.ErrNotExist) {
						s.log.Error("finish interrupted migration: remove old copy", "volume", vol, "dir", old, "err", err)
						continue
					}
					s.log.Warn("finished an interrupted migration: removed the old copy", "volume", vol, "dir", old)
				}
			}
			os.Remove(marker)
		}
	}
}
