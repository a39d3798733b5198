package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// Clone makes a linked clone: a new volume whose only file is a delta over
// the layers src had frozen at snapshot snap (a new snapshot is taken
// when snap is ""). The clone is served at once, shares src's frozen
// layers read-only, and lives on src's datastore. src keeps running.
func (e *Engine) Clone(ctx context.Context, src, snap, name string) (apischema.VolumeInfo, error) {
	if err := datastore.CheckName("volume", name); err != nil {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	vs, unlock, err := e.snapVolumes([]string{src}, "clone")
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	defer unlock()
	v := vs[0]
	if filling(v) != nil {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "volume %s is served from a backup: promote it before cloning", src)
	}
	if snap == "" {
		snap = "clone-" + name
		if err := v.dev.Flush(ctx); err != nil { // so the flush under the hold is short
			return apischema.VolumeInfo{}, fmt.Errorf("clone %s: flush %s: %w", name, src, err)
		}
		if _, err := e.snapshotOne(ctx, v, snap, time.Now()); err != nil {
			return apischema.VolumeInfo{}, err
		}
	}
	ls := layersOf(v)
	k, err := findSnapshot(v, ls, snap)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	ent, err := e.reserveVolume(name, v.ds.name)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	nv, err := e.cloneFiles(ctx, ent, name, ls[k], v.files)
	e.mu.Lock()
	delete(e.reserved, name)
	if err == nil {
		e.volumes[name] = nv
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	e.log.Info("linked clone created", "volume", name, "origin", src, "snapshot", snap)
	return e.GetVolume(ctx, name)
}

// cloneFiles writes the clone's delta in a staging directory, commits it
// and opens the clone's stack from what is on disk.
func (e *Engine) cloneFiles(ctx context.Context, ent *dsEntry, name string, parent layer, srcFiles datastore.VolumeFiles) (*volume, error) {
	st, err := ent.ds.Stage(name)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	// The hint is relative to the clone's final directory.
	hint, err := filepath.Rel(ent.ds.VolumeDir(name), parent.path)
	if err != nil {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	cid, err := parent.cid()
	if err != nil {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("clone %s: read CID of %s: %w", name, parent.path, err)
	}
	path := filepath.Join(st.Dir, datastore.DeltaName(name, 1))
	if err := sparse.Create(path, srcFiles.Size, sparse.ParentRef{FileNameHint: hint, CID: cid}, sparse.CreateOptions{}); err != nil {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	if err := ent.ds.Commit(st); err != nil {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	return e.openCommitted(ctx, ent, name, "clone")
}
