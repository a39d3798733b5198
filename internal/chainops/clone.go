package chainops

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// Clone makes a linked clone: a new volume whose only file is a delta over
// the layers src had frozen at snapshot snap (a new snapshot is taken
// when snap is ""). The clone is served at once, shares src's frozen
// layers read-only, and lives on src's datastore. src keeps running.
func (s *Service) Clone(ctx context.Context, src, snap, name string) error {
	if err := datastore.CheckName("volume", name); err != nil {
		return errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	vs, unlock, err := s.LockVolumes([]string{src}, "clone")
	if err != nil {
		return err
	}
	defer unlock()
	v := vs[0]
	if v.Filling() != nil {
		return errorf(errkind.ErrInvalidArgument, "volume %s is served from a backup: promote it before cloning", src)
	}
	if snap == "" {
		snap = "clone-" + name
		if err := v.Gate().Flush(ctx); err != nil { // so the flush under the hold is short
			return fmt.Errorf("clone %s: flush %s: %w", name, src, err)
		}
		if _, err := s.snapshotOne(ctx, v, snap, time.Now()); err != nil {
			return err
		}
	}
	ls := layersOf(v)
	k, err := findSnapshot(v, ls, snap)
	if err != nil {
		return err
	}
	parent, size := ls[k], v.Files().Size
	err = s.host.CreateStaged(ctx, name, v.Datastore().Name, "clone", func(st *datastore.Staged, d *datastore.Datastore) error {
		return cloneDelta(st, d, name, parent, size)
	})
	if err != nil {
		return err
	}
	s.log.Info("linked clone created", "volume", name, "origin", src, "snapshot", snap)
	return nil
}

// cloneDelta writes the clone's delta, over parent, in the staging
// directory st of datastore d.
func cloneDelta(st *datastore.Staged, d *datastore.Datastore, name string, parent layer, size int64) error {
	// The hint is relative to the clone's final directory.
	hint, err := filepath.Rel(d.VolumeDir(name), parent.path)
	if err != nil {
		return fmt.Errorf("clone %s: %w", name, err)
	}
	cid, err := parent.cid()
	if err != nil {
		return fmt.Errorf("clone %s: read CID of %s: %w", name, parent.path, err)
	}
	path := filepath.Join(st.Dir, datastore.DeltaName(name, 1))
	if err := sparse.Create(path, size, sparse.ParentRef{FileNameHint: hint, CID: cid}, sparse.CreateOptions{}); err != nil {
		return fmt.Errorf("clone %s: %w", name, err)
	}
	return nil
}
