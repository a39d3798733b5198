package chainops

import (
	"context"
	"fmt"
	"os"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
)

// RevertSnapshot returns a volume to a snapshot: every layer written since
// is deleted and a new empty delta over the snapshot's layer takes the
// writes; the snapshot itself stays. Connected clients stay connected and
// see the snapshot's content from their next read (as after a disk swap:
// stop the guest first unless it expects that).
func (s *Service) RevertSnapshot(ctx context.Context, vol, name string) (apischema.SnapshotInfo, error) {
	vs, unlock, err := s.LockVolumes([]string{vol}, "revert")
	if err != nil {
		return apischema.SnapshotInfo{}, err
	}
	defer unlock()
	v := vs[0]
	ls := layersOf(v)
	k, err := findSnapshot(v, ls, name)
	if err != nil {
		return apischema.SnapshotInfo{}, err
	}
	if err := s.refuseShared(v, "revert to snapshot "+name+":", ls[k+1:]); err != nil {
		return apischema.SnapshotInfo{}, err
	}
	p, err := v.BeginPivot()
	if err != nil {
		return apischema.SnapshotInfo{}, err
	}
	defer p.End()
	// The content goes back to the snapshot's, under every bitmap: all
	// dirty (an over-report), saved before anything is deleted.
	if err := v.MarkAllChanged(); err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("revert volume %s: %w", vol, err)
	}
	// Delete from the top down: a crash in between leaves the chain at
	// an older consistent state whose top is a named layer, which open
	// completes with a new delta (RecoverTop).
	for i := len(ls) - 1; i > k; i-- {
		if err := os.Remove(ls[i].path); err != nil {
			return apischema.SnapshotInfo{}, fmt.Errorf("revert volume %s: delete %s: %w", vol, ls[i].path, err)
		}
	}
	if err := datastore.SyncDir(dirOf(v)); err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("revert volume %s: %w", vol, err)
	}
	ext, path, err := newDelta(v, dirOf(v), ls[k], v.Files().Size)
	if err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("revert volume %s: create delta: %w", vol, err)
	}
	// The installed chain keeps serving if what follows fails (its deleted
	// layers stay open); the next start opens the new delta over the
	// snapshot (RecoverTop).
	p.OnAbort(func() { ext.Close() })
	c := p.Layers().(*chain.Chain)
	base, deltas := c.Layers()
	nd, err := chain.New(base, append(append([]chain.Delta(nil), deltas[:k]...), chain.SparseDelta{Extent: ext}))
	if err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("revert volume %s: %w; restart the daemon to finish the revert", vol, err)
	}
	p.Install(nd, func(f *datastore.VolumeFiles) {
		f.Chain.Deltas = append(f.Chain.Deltas[:k:k], path)
		f.Chain.Own = f.Chain.Own - (len(ls) - 1 - k) + 1
		f.Chain.NextDelta++
	})
	p.Commit()
	// Only now that the new chain serves: the layers above k go.
	for _, d := range deltas[k:] {
		d.Close()
	}
	_, t := ls[k].snapshot()
	s.log.Info("volume reverted", "volume", vol, "snapshot", name, "deleted_layers", len(ls)-1-k)
	return apischema.SnapshotInfo{Volume: vol, Name: name, Created: t, Layer: ls[k].path}, nil
}

// RecoverTop completes an interrupted snapshot or revert at open: a
// volume whose top layer is named by a snapshot must not write into it,
// so a new empty delta goes on top (what the interrupted operation was
// about to do). It returns the files to open.
func RecoverTop(f datastore.VolumeFiles, dir string) (datastore.VolumeFiles, bool, error) {
	top := f.DescriptorPath
	if n := len(f.Chain.Deltas); n > 0 {
		top = f.Chain.Deltas[n-1]
	}
	if f.ReadOnly || (len(f.Chain.Deltas) == 0 && !f.Chain.BaseOwn) {
		return f, false, nil
	}
	l := layer{path: top}
	if len(f.Chain.Deltas) > 0 {
		ext, err := openDeltaRO(top)
		if err != nil {
			return f, false, err
		}
		defer ext.Close()
		l.delta = ext
	}
	if name, _ := l.snapshot(); name == "" {
		return f, false, nil
	}
	path, err := createDeltaFile(f, dir, l, f.Size)
	if err != nil {
		return f, false, fmt.Errorf("complete the interrupted snapshot of %s: %w", f.Name, err)
	}
	f.Chain.Deltas = append(f.Chain.Deltas, path)
	f.Chain.Own++
	f.Chain.NextDelta++
	return f, true, nil
}
