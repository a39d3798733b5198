package engine

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fill"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/job"
)

// Snapshots, snapshot removal, revert, clones, promote and live migration
// are internal/chainops's; the engine is its Host. Every change they make
// to a served volume's stack goes through the engine's pivot (pivot.go).

// CreateSnapshot takes one crash-consistent snapshot of every volume at
// the same instant (chainops.Service.CreateSnapshot).
func (e *Engine) CreateSnapshot(ctx context.Context, vols []string, name string) ([]apischema.SnapshotInfo, error) {
	return e.chain.CreateSnapshot(ctx, vols, name)
}

// ListSnapshots lists a volume's own snapshots, oldest first.
func (e *Engine) ListSnapshots(ctx context.Context, vol string) ([]apischema.SnapshotInfo, error) {
	return e.chain.ListSnapshots(ctx, vol)
}

// RemoveSnapshot deletes a snapshot by merging it away, live, as a job.
func (e *Engine) RemoveSnapshot(ctx context.Context, vol, name string) (job.Info, error) {
	return e.chain.RemoveSnapshot(ctx, vol, name)
}

// RevertSnapshot puts a volume back to a snapshot's content.
func (e *Engine) RevertSnapshot(ctx context.Context, vol, name string) (apischema.SnapshotInfo, error) {
	return e.chain.RevertSnapshot(ctx, vol, name)
}

// Clone makes a linked clone of src at snapshot snap ("" takes one).
func (e *Engine) Clone(ctx context.Context, src, snap, name string) (apischema.VolumeInfo, error) {
	if err := e.chain.Clone(ctx, src, snap, name); err != nil {
		return apischema.VolumeInfo{}, err
	}
	return e.GetVolume(ctx, name)
}

// Promote makes a linked clone, or a volume served from a backup,
// standalone, as a job.
func (e *Engine) Promote(ctx context.Context, name string) (job.Info, error) {
	return e.chain.Promote(ctx, name)
}

// Migrate moves a running volume to another datastore, as a job.
func (e *Engine) Migrate(ctx context.Context, vol, to string, rate int64) (job.Info, error) {
	return e.chain.Migrate(ctx, vol, to, rate)
}

// hit marks a named step of a long operation: tests' onStep, then the
// armed failpoint (crash tests stop the process there).
func (e *Engine) hit(name string) {
	if e.onStep != nil {
		e.onStep(name)
	}
	e.cfg.Failpoints.Hit(name)
}

// cloneUsersLocked lists the volumes other than v whose chains read path.
// Caller holds e.mu.
func (e *Engine) cloneUsersLocked(v *volume, path string) []string {
	var users []string
	for _, o := range e.volumes {
		if o == v {
			continue
		}
		if o.files.DescriptorPath == path || slices.Contains(o.files.Chain.Deltas, path) {
			users = append(users, o.name)
		}
	}
	slices.Sort(users)
	return users
}

// chainHost is the engine as internal/chainops's Host.
type chainHost struct{ e *Engine }

var _ chainops.Host = chainHost{}

func (h chainHost) Lock()                { h.e.mu.Lock() }
func (h chainHost) Unlock()              { h.e.mu.Unlock() }
func (h chainHost) ClosedLocked() bool   { return h.e.closed }
func (h chainHost) Background(fn func()) { h.e.cleanups.Go(fn) }
func (h chainHost) Step(name string)     { h.e.hit(name) }

func (h chainHost) LookupLocked(name string) (chainops.Vol, error) {
	v, err := h.e.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return chainVol{h.e, v}, nil
}

func (h chainHost) VolumesLocked() []chainops.Vol {
	out := make([]chainops.Vol, 0, len(h.e.volumes))
	for _, v := range h.e.volumes {
		out = append(out, chainVol{h.e, v})
	}
	return out
}

func (h chainHost) CloneUsersLocked(v chainops.Vol, path string) []string {
	return h.e.cloneUsersLocked(v.(chainVol).v, path)
}

func (h chainHost) DatastoreLocked(name string) (chainops.Datastore, error) {
	ent, ok := h.e.datastores[name]
	switch {
	case !ok:
		return chainops.Datastore{}, errorf(errkind.ErrDatastoreNotFound, "datastore %s does not exist (see `extrasphere datastore list`)", name)
	case ent.ds == nil:
		return chainops.Datastore{}, errorf(errkind.ErrDatastoreOffline, "datastore %s at %s is offline (%v)", name, ent.path, ent.err)
	}
	return chainops.Datastore{Name: ent.name, DS: ent.ds}, nil
}

func (h chainHost) StartJobLocked(v chainops.Vol, kind string, total int64, fn job.Func) (*job.Job, error) {
	return h.e.startJobLocked(v.(chainVol).v, kind, total, fn, nil)
}

func (h chainHost) CreateStaged(ctx context.Context, name, ds, what string, write func(*datastore.Staged, *datastore.Datastore) error) error {
	_, err := h.e.createStaged(ctx, name, ds, what, write)
	return err
}

// chainVol is one volume as a chainops.Vol.
type chainVol struct {
	e *Engine
	v *volume
}

func (c chainVol) Name() string                 { return c.v.name }
func (c chainVol) SnapMu() *sync.Mutex          { return &c.v.snapMu }
func (c chainVol) Files() datastore.VolumeFiles { return c.v.files }
func (c chainVol) Layers() blockdev.Device      { return c.v.layers }
func (c chainVol) Gate() *gate.Gate             { return c.v.dev }
func (c chainVol) Filling() *fill.Device        { return filling(c.v) }
func (c chainVol) MarkAllChanged() error        { return markAllCBT(c.v) }

func (c chainVol) Datastore() chainops.Datastore {
	return chainops.Datastore{Name: c.v.ds.name, DS: c.v.ds.ds}
}

func (c chainVol) InfoLocked() chainops.VolInfo {
	v := c.v
	return chainops.VolInfo{Err: v.err, Served: v.dev != nil, Op: v.op, ReadOnly: v.files.ReadOnly}
}

func (c chainVol) BeginPivot() (chainops.Pivot, error) {
	p, err := c.e.beginPivot(c.v)
	if err != nil {
		return nil, err
	}
	return chainPivot{p}, nil
}

// chainPivot is a pivot as a chainops.Pivot.
type chainPivot struct{ p *pivot }

func (c chainPivot) Current() blockdev.Device { return c.p.current() }
func (c chainPivot) Layers() blockdev.Device  { return c.p.layers }
func (c chainPivot) OnAbort(f func())         { c.p.onAbort(f) }
func (c chainPivot) Commit()                  { c.p.commit() }
func (c chainPivot) End() time.Duration       { return c.p.end() }

func (c chainPivot) Install(layers blockdev.Device, edit func(*datastore.VolumeFiles)) {
	c.p.install(layers, edit)
}

// Move installs layers with files and the volume on datastore ds; the
// edit runs under Engine.mu, where the datastore map is read.
func (c chainPivot) Move(layers blockdev.Device, files datastore.VolumeFiles, ds chainops.Datastore) {
	v, e := c.p.v, c.p.e
	c.p.install(layers, func(f *datastore.VolumeFiles) {
		*f = files
		v.ds = e.datastores[ds.Name]
	})
}
