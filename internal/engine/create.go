package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/flat"
)

// SectorSize is the granularity of volume sizes; sizes are rounded up to it.
const SectorSize = 512

// CreateOptions are the parameters of CreateVolume.
type CreateOptions struct {
	Name        string
	Size        int64  // bytes, > 0; rounded up to a multiple of 512
	Datastore   string // "" means the default datastore
	Preallocate bool
	ReadOnly    bool
}

// CreateVolume creates a volume on a datastore and serves it at once.
func (e *Engine) CreateVolume(ctx context.Context, o CreateOptions) (apischema.VolumeInfo, error) {
	return e.createVolume(ctx, o, false)
}

// createVolume is CreateVolume; importing marks the new volume as the
// target of an import that has not finished (see datastore.ImportingFile).
func (e *Engine) createVolume(ctx context.Context, o CreateOptions, importing bool) (apischema.VolumeInfo, error) {
	if err := datastore.CheckName("volume", o.Name); err != nil {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	if o.Size <= 0 {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "create volume %s: size must be positive, got %d", o.Name, o.Size)
	}
	size, ok := roundUp(o.Size)
	if !ok {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "create volume %s: size %d is too large", o.Name, o.Size)
	}
	if o.Datastore == "" {
		o.Datastore = DefaultDatastore
	}

	ent, err := e.reserveVolume(o.Name, o.Datastore)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	v, err := e.createFiles(ctx, ent, o.Name, size, o.Preallocate, o.ReadOnly, importing)

	e.mu.Lock()
	delete(e.reserved, o.Name)
	if err == nil {
		e.volumes[o.Name] = v
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	e.log.Info("volume created", "volume", o.Name, "datastore", ent.name, "size", size, "preallocate", o.Preallocate, "read_only", o.ReadOnly)
	return e.GetVolume(ctx, o.Name)
}

// reserveVolume checks that name is free on every datastore and reserves
// it, and returns the online datastore named ds.
func (e *Engine) reserveVolume(name, ds string) (*dsEntry, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errorf(errkind.ErrClosed, "create volume %s: the daemon is shutting down", name)
	}
	if v, ok := e.volumes[name]; ok {
		return nil, errorf(errkind.ErrVolumeExists, "volume %s already exists on datastore %s: choose another name or remove it first", name, v.ds.name)
	}
	if e.reserved[name] {
		return nil, errorf(errkind.ErrVolumeExists, "volume %s is being created by another request", name)
	}
	ent, ok := e.datastores[ds]
	if !ok {
		return nil, errorf(errkind.ErrDatastoreNotFound, "datastore %s does not exist (see `extrasphere datastore list`)", ds)
	}
	if ent.ds == nil {
		return nil, errorf(errkind.ErrDatastoreOffline, "datastore %s at %s is offline (%v)", ds, ent.path, ent.err)
	}
	e.reserved[name] = true
	return ent, nil
}

// createFiles writes the volume's files in a staging directory, commits
// it, reads the descriptor back (the files are the truth) and opens the
// stack.
func (e *Engine) createFiles(ctx context.Context, ent *dsEntry, name string, size int64, prealloc, ro, importing bool) (*volume, error) {
	st, err := ent.ds.Stage(name)
	if errors.Is(err, datastore.ErrVolumeDirExists) {
		return nil, errorf(errkind.ErrVolumeExists, "directory %s already exists on datastore %s (an unreadable volume?): move it away or choose another name",
			ent.ds.VolumeDir(name), ent.name)
	}
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := flat.Create(st.DescriptorPath, size, flat.CreateOptions{Preallocate: prealloc, ReadOnly: ro}); err != nil {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("create volume %s on datastore %s: %w", name, ent.name, err)
	}
	if importing {
		if err := st.MarkImporting(); err != nil {
			ent.ds.Abort(st)
			return nil, err
		}
	}
	if err := ent.ds.Commit(st); err != nil {
		ent.ds.Abort(st)
		if errors.Is(err, datastore.ErrVolumeDirExists) {
			return nil, errorf(errkind.ErrVolumeExists, "directory %s appeared while creating volume %s", ent.ds.VolumeDir(name), name)
		}
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	return e.openCommitted(ctx, ent, name, "create volume")
}

// openCommitted reads a just-committed volume back from its files (the
// files are the truth) and opens its stack; on failure the volume's
// directory is removed again. what names the operation in errors.
func (e *Engine) openCommitted(ctx context.Context, ent *dsEntry, name, what string) (*volume, error) {
	files, err := ent.ds.Load(name)
	if err != nil {
		ent.ds.RemoveVolume(name)
		return nil, fmt.Errorf("%s %s: read back: %w", what, name, err)
	}
	tracking, err := e.freshCBT(name, files.Size)
	if err != nil {
		ent.ds.RemoveVolume(name)
		return nil, err
	}
	dev, layers, err := buildStack(ctx, files, tracking, nil, e.openRestoreSource, e.cfg.Failpoints)
	if err != nil {
		ent.ds.RemoveVolume(name)
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return newVolume(name, ent, files, dev, layers, tracking), nil
}

// roundUp rounds n up to a multiple of SectorSize; ok is false on overflow.
func roundUp(n int64) (int64, bool) {
	r := (n + SectorSize - 1) / SectorSize * SectorSize
	return r, r >= n
}

// createStaged makes volume name on datastore ds from the files write
// puts in a staging directory (a clone's delta), commits it, opens the
// volume from what is on disk and serves it. what names the operation in
// errors. On failure nothing of the volume remains.
func (e *Engine) createStaged(ctx context.Context, name, ds, what string, write func(*datastore.Staged, *datastore.Datastore) error) (*volume, error) {
	ent, err := e.reserveVolume(name, ds)
	if err != nil {
		return nil, err
	}
	v, err := func() (*volume, error) {
		st, err := ent.ds.Stage(name)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, name, err)
		}
		if err := write(st, ent.ds); err != nil {
			ent.ds.Abort(st)
			return nil, err
		}
		if err := ent.ds.Commit(st); err != nil {
			ent.ds.Abort(st)
			return nil, fmt.Errorf("%s %s: %w", what, name, err)
		}
		return e.openCommitted(ctx, ent, name, what)
	}()
	e.mu.Lock()
	delete(e.reserved, name)
	if err == nil {
		e.volumes[name] = v
	}
	e.mu.Unlock()
	return v, err
}
