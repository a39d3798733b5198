package chainops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
)

// KindConsolidate is the job kind of snapshot removal.
const KindConsolidate = "consolidate"

// refuseShared fails when a clone reads one of the layers.
func (s *Service) refuseShared(v Vol, what string, ls []layer) error {
	s.host.Lock()
	defer s.host.Unlock()
	for _, l := range ls {
		if users := s.host.CloneUsersLocked(v, l.path); len(users) > 0 {
			return errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: linked clone(s) %v read its layer %s; promote or remove them first",
				what, v.Name(), users, filepath.Base(l.path))
		}
	}
	return nil
}

// RemoveSnapshot deletes a snapshot by merging the delta written since it
// into the layer it froze, live: the VM keeps writing during the copy and
// I/O is held only for the last grains and the pivot. It runs as a job.
// For the newest snapshot that delta is the one being written; for an
// older one it is frozen too (snaprm_frozen.go).
func (s *Service) RemoveSnapshot(ctx context.Context, vol, name string) (job.Info, error) {
	vs, unlock, err := s.LockVolumes([]string{vol}, "remove a snapshot of")
	if err != nil {
		return job.Info{}, err
	}
	v := vs[0]
	ls := layersOf(v)
	k, err := findSnapshot(v, ls, name)
	if err == nil {
		err = s.refuseShared(v, "remove snapshot "+name+" of", ls[k:])
	}
	c, ok := v.Layers().(*chain.Chain)
	if err == nil && !ok {
		err = errorf(errkind.ErrSnapshotNotFound, "volume %s has no delta to merge", vol)
	}
	if err != nil {
		unlock()
		return job.Info{}, err
	}
	// The removal commits here: the layer loses its name before any byte
	// of the newer delta is copied into it, so a cancelled or crashed
	// merge can never leave a snapshot whose content changed. The merge
	// itself resumes at the next start if it does not finish (see
	// ResumeMerges).
	if err := ls[k].setSnapshot("", time.Time{}); err != nil {
		unlock()
		return job.Info{}, fmt.Errorf("remove snapshot %s of volume %s: %w", name, vol, err)
	}
	var j *job.Job
	if k == len(ls)-2 {
		j, err = s.startMerge(v, c, ls[k], ls[k+1], unlock)
	} else {
		j, err = s.startFrozenMerge(v, c, k, unlock) // see snaprm_frozen.go
	}
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

// startMerge runs the merge of top into below as a job; unlock (of
// v.snapMu) runs when it ends.
func (s *Service) startMerge(v Vol, c *chain.Chain, below, top layer, unlock func()) (*job.Job, error) {
	m := chain.NewMerger(c)
	grain := int64(c.Caps().PrefBlock)
	return s.startHeld(v, KindConsolidate, m.Grains()*grain, unlock, m.Abort, func(ctx context.Context, j *job.Job) error {
		return s.consolidate(ctx, v, m, below, top, j)
	})
}

// startHeld runs fn as a job of kind on v, whose SnapMu the caller holds:
// unlock releases it when the job ends. If the job cannot start, abort
// (nil for none) undoes what the caller prepared, then unlock runs.
func (s *Service) startHeld(v Vol, kind string, total int64, unlock, abort func(), fn job.Func) (*job.Job, error) {
	s.host.Lock()
	j, err := s.host.StartJobLocked(v, kind, total, func(ctx context.Context, j *job.Job) error {
		defer unlock()
		return fn(ctx, j)
	})
	s.host.Unlock()
	if err != nil {
		if abort != nil {
			abort()
		}
		unlock()
		return nil, err
	}
	return j, nil
}

// consolidate merges top into below (see RemoveSnapshot). v.snapMu is held.
func (s *Service) consolidate(ctx context.Context, v Vol, m *chain.Merger, below, top layer, j *job.Job) error {
	progress := func(n int64) {
		if j != nil {
			d := n * int64(v.Layers().Caps().PrefBlock)
			if d > j.Info().Total {
				j.SetTotal(d) // grains written meanwhile are copied again
			}
			j.SetDone(d)
		}
	}
	if j != nil {
		j.SetDetail("merging " + filepath.Base(top.path) + " into " + filepath.Base(below.path))
	}
	if _, err := m.Copy(ctx, 64, 8, progress); err != nil {
		m.Abort()
		return fmt.Errorf("remove snapshot of volume %s: copy: %w", v.Name(), err)
	}
	if err := m.Settle(ctx); err != nil {
		m.Abort()
		return fmt.Errorf("remove snapshot of volume %s: flush: %w", v.Name(), err)
	}
	s.host.Step("consolidate.after-copy")
	p, err := v.BeginPivot()
	if err != nil {
		m.Abort()
		return err
	}
	p.OnAbort(m.Abort)
	next, err := s.commitMerge(ctx, v, m, below, top)
	if err != nil {
		p.End()
		return err
	}
	p.Install(next, func(f *datastore.VolumeFiles) {
		f.Chain.Deltas = f.Chain.Deltas[:len(f.Chain.Deltas)-1]
		f.Chain.Own--
	})
	p.Commit()
	stall := p.End()
	progress(m.Copied())
	if err := top.delta.Close(); err != nil {
		s.log.Warn("close merged delta", "volume", v.Name(), "err", err)
	}
	s.log.Info("snapshot removed", "volume", v.Name(), "merged", filepath.Base(top.path), "into", filepath.Base(below.path), "io_held", stall)
	return nil
}

// commitMerge finishes a merge with I/O held: copy the last grains, flush,
// and delete the top delta (RemoveSnapshot un-named the layer before: that
// is the removal's commit point, docs/FORMATS.md section 3; until the file
// is gone the old chain reads the same). It returns
// the chain without the top delta, for the caller's pivot to install.
func (s *Service) commitMerge(ctx context.Context, v Vol, m *chain.Merger, below, top layer) (blockdev.Device, error) {
	if err := m.Finish(ctx); err != nil {
		return nil, fmt.Errorf("remove snapshot of volume %s: finish copy: %w", v.Name(), err)
	}
	s.host.Step("consolidate.before-unlink")
	if err := os.Remove(top.path); err != nil {
		return nil, fmt.Errorf("remove snapshot of volume %s: delete %s: %w", v.Name(), top.path, err)
	}
	if err := datastore.SyncDir(filepath.Dir(top.path)); err != nil {
		return nil, fmt.Errorf("remove snapshot of volume %s: %w", v.Name(), err)
	}
	s.host.Step("consolidate.after-unlink")
	return m.Without()
}

// mergeNewest removes the newest snapshot snap synchronously (rollbacks
// and recovery). The caller holds v.SnapMu().
func (s *Service) mergeNewest(ctx context.Context, v Vol, snap string) error {
	ls := layersOf(v)
	k, err := findSnapshot(v, ls, snap)
	if err != nil {
		return err
	}
	c, ok := v.Layers().(*chain.Chain)
	if k != len(ls)-2 || !ok {
		return fmt.Errorf("snapshot %s of volume %s is not the newest", snap, v.Name())
	}
	if err := ls[k].setSnapshot("", time.Time{}); err != nil {
		return err
	}
	return s.consolidate(ctx, v, chain.NewMerger(c), ls[k], ls[k+1], nil)
}
