package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/backup"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fill"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/sparse"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// Instant restore. `backup serve` creates a volume whose base descriptor
// carries ddb.extrasphere.restoreFrom = "REPO/BACKUP/VOLUME" over an
// empty sparse flat file, with a delta on top for the writes, and serves
// it at once: the base reads from the backup (fill.Device). Promote fills
// the flat file from the backup, removes the key (the commit point: from
// then on the flat file alone is the base), pivots, and merges the delta
// down. A crash before the commit serves from the backup again; after it,
// the delta merge resumes at start (an unnamed base under the top).

// restoreSource opens the backup volume a restoreFrom value names.
type restoreSource func(ctx context.Context, ref string) (fill.Source, error)

// ServeBackup creates volume req.Name from a backup and serves it at once,
// reading from the repository until `promote` copies it home.
func (e *Engine) ServeBackup(ctx context.Context, req apischema.ServeRequest) (apischema.VolumeInfo, error) {
	if req.Repo == "" {
		req.Repo = apischema.DefaultRepo
	}
	if err := datastore.CheckName("volume", req.Name); err != nil {
		return apischema.VolumeInfo{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	r, err := e.useRepo(ctx, req.Repo)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	m, err := r.Load(ctx, req.Backup)
	if err != nil {
		return apischema.VolumeInfo{}, backup.RepoError(req.Repo, err)
	}
	vol, err := backup.PickVolume(m, req.Volume)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	if req.Datastore == "" {
		req.Datastore = DefaultDatastore
	}
	ent, err := e.reserveVolume(req.Name, req.Datastore)
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	v, err := e.createRestoring(ctx, ent, req.Name, vol.Size, req.Repo+"/"+m.ID+"/"+vol.Name)
	e.mu.Lock()
	delete(e.reserved, req.Name)
	if err == nil {
		e.volumes[req.Name] = v
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	e.log.Info("serving a backup", "volume", req.Name, "backup", m.ID, "source", vol.Name, "repository", req.Repo)
	return e.GetVolume(ctx, req.Name)
}

// createRestoring writes the files of a volume restored from ref (flat,
// descriptor with the key, delta on top) in a staging directory, commits
// it and opens it.
func (e *Engine) createRestoring(ctx context.Context, ent *dsEntry, name string, size int64, ref string) (*volume, error) {
	st, err := ent.ds.Stage(name)
	if err != nil {
		return nil, fmt.Errorf("serve backup as volume %s: %w", name, err)
	}
	fail := func(err error) (*volume, error) {
		ent.ds.Abort(st)
		return nil, fmt.Errorf("serve backup as volume %s: %w", name, err)
	}
	if err := flat.Create(st.DescriptorPath, size, flat.CreateOptions{}); err != nil {
		return fail(err)
	}
	d, err := flat.ReadDescriptor(st.DescriptorPath)
	if err != nil {
		return fail(err)
	}
	d.DDB.Set(chainops.RestoreFromKey, ref)
	if err := vmdk.WriteFileAtomic(st.DescriptorPath, d.Marshal()); err != nil {
		return fail(err)
	}
	delta := filepath.Join(st.Dir, datastore.DeltaName(name, 1))
	parent := sparse.ParentRef{FileNameHint: filepath.Base(st.DescriptorPath), CID: d.CID}
	if err := sparse.Create(delta, size, parent, sparse.CreateOptions{}); err != nil {
		return fail(err)
	}
	if err := ent.ds.Commit(st); err != nil {
		return fail(err)
	}
	return e.openCommitted(ctx, ent, name, "serve backup as volume")
}

// openRestoreSource opens the backup volume "REPO/BACKUP/VOLUME".
func (e *Engine) openRestoreSource(ctx context.Context, ref string) (fill.Source, error) {
	parts := strings.SplitN(ref, "/", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("%s %q is not REPO/BACKUP/VOLUME", chainops.RestoreFromKey, ref)
	}
	r, err := e.useRepo(ctx, parts[0])
	if err != nil {
		return nil, fmt.Errorf("restoring from backup %s: %w", parts[1], err)
	}
	m, err := r.Load(ctx, parts[1])
	if err != nil {
		return nil, fmt.Errorf("restoring from backup %s: %w", parts[1], backup.RepoError(parts[0], err))
	}
	vr, err := r.OpenVolume(ctx, m, parts[2], repo.ReaderOptions{})
	if err != nil {
		return nil, fmt.Errorf("restoring from backup %s: %w", parts[1], backup.RepoError(parts[0], err))
	}
	return vr, nil
}

// restoringBase returns the base to use for fb: fb itself, or a
// fill.Device over it when its descriptor names a backup to restore from.
func restoringBase(ctx context.Context, f datastore.VolumeFiles, fb *flat.Device, src restoreSource) (blockdev.Device, error) {
	d, err := flat.ReadDescriptor(f.DescriptorPath)
	if err != nil {
		return nil, err
	}
	ref, ok := d.DDB.Get(chainops.RestoreFromKey)
	if !ok {
		return fb, nil
	}
	if src == nil {
		return nil, fmt.Errorf("base %s is being restored from backup %s, which cannot be opened here", f.DescriptorPath, ref)
	}
	s, err := src(ctx, ref)
	if err != nil {
		return nil, err
	}
	fd, err := fill.New(fb, s)
	if err != nil {
		s.Close()
		return nil, err
	}
	return fd, nil
}

// filling returns v's base while it is restored from a backup, or nil.
func filling(v *volume) *fill.Device {
	c, ok := v.layers.(*chain.Chain)
	if !ok {
		return nil
	}
	base, _ := c.Layers()
	fd, _ := base.(*fill.Device)
	return fd
}
