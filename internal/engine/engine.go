package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"

	"github.com/extrasphere/extrasphere/internal/access"
	"github.com/extrasphere/extrasphere/internal/backup"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/replication"
	"github.com/extrasphere/extrasphere/internal/repos"
)

// Engine is the daemon's core. All methods are safe for concurrent use.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	cat  *catalog.Catalog
	jobs *job.Registry

	mu         sync.Mutex // guards datastores, volumes, reserved, closed and every field of *volume and *dsEntry marked "guarded by Engine.mu"
	datastores map[string]*dsEntry
	volumes    map[string]*volume
	reserved   map[string]bool // volume and datastore names being created, not yet in the maps ("ds:" prefix for datastores)
	closed     bool

	cleanups sync.WaitGroup // background removals of files no longer read (old copies after a migration); Close waits

	repos   *repos.Registry      // the backup repositories (internal/repos has its own lock)
	backups *backup.Service      // backups and restores (internal/backup; the engine is its Host)
	repl    *replication.Service // mirrors and replicas (internal/replication; the engine is its Host)
	chain   *chainops.Service    // snapshots, clones, promote, migration (internal/chainops; the engine is its Host)
	access  *access.Access       // the NBD clients and what they may open

	// onStep, set only by tests before any job runs, is called at every
	// named step (failpoint) of a long operation.
	onStep func(name string)
}

var _ nbd.Exports = (*Engine)(nil)

// dsEntry is one datastore of the catalog.
type dsEntry struct {
	name string
	path string
	ds   *datastore.Datastore // nil when offline
	err  error                // why it is offline

	problems []error // guarded by Engine.mu: volumes Scan could not load, name clashes
}

// volume is one volume and its open stack.
type volume struct {
	name string
	ds   *dsEntry

	// The fields below are guarded by Engine.mu.
	files datastore.VolumeFiles // what the descriptor says; replaced on a read-only change
	dev   *gate.Gate            // the top of the stack (stack.go); nil when err != nil
	err   error                 // why the volume cannot be served
	conns int                   // open NBD connections (OpenExport minus release)
	jobs  map[string]*job.Job   // running jobs on this volume, by ID
	op    string                // exclusive change in progress ("remove", "set read-only"), "" if none
	gone  chan struct{}         // closed on forced removal: the NBD server drops the volume's connections

	// layers is what sits below the gate (dev): the *chain.Chain or the
	// *flat.Device. Pivots replace it together with the gate's device,
	// holding snapMu.
	layers blockdev.Device
	snapMu sync.Mutex // serialises snapshot, consolidation and pivot operations on the volume

	// cbt is the volume's changed-block tracking (cbt.go), shared by every
	// stack a pivot builds. Set before the volume is visible and never
	// replaced; nil when the volume is not served.
	cbt *cbt.State

	// repl is the volume's replication state (internal/replication):
	// its mirror, whose filter the stack wraps, and its replica role.
	// Guarded as its fields say.
	repl replication.State
}

// goneLocked is the channel closed when v's connections must end (forced
// removal, failover), made on first use. e.mu held.
func (v *volume) goneLocked() chan struct{} {
	if v.gone == nil {
		v.gone = make(chan struct{})
	}
	return v.gone
}

// wrap builds what sits between v's gate and the layers dev.
func (v *volume) wrap(dev blockdev.Device) blockdev.Device {
	return wrapInner(v.cbt, v.mirror(), dev)
}

// mirror is v's running mirror, nil if none.
func (v *volume) mirror() *mirror.Mirror { return v.repl.Mirror() }

// Open opens the data dir, the catalog and every datastore and volume.
// A datastore or volume that cannot be opened does not fail Open: it is
// logged and listed with its error, and everything else is served.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("open engine: no data dir: %w", errkind.ErrInvalidArgument)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("open engine: create data dir: %w", err)
	}
	cat, err := catalog.Open(cfg.catalogPath())
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, cat: cat, jobs: job.NewRegistry(jobOptions(cat, cfg.Logger)),
		datastores: map[string]*dsEntry{}, volumes: map[string]*volume{}, reserved: map[string]bool{}}
	e.access = access.New(cat, cfg.ClientCA, cfg.Logger)
	e.backups = backup.New(backupHost{e}, cfg.Logger)
	e.chain = chainops.New(chainHost{e}, cfg.Logger)
	e.repl = replication.New(replHost{e}, replication.Options{Catalog: cat, Node: cfg.Node, NBDAddr: cfg.NBDAddr,
		Failpoints: cfg.Failpoints, Logger: cfg.Logger})
	e.repos, err = repos.Open(cat, cfg.Logger, cfg.Failpoints, now)
	if err == nil {
		err = e.load(ctx)
	}
	if err != nil {
		e.jobs.Close()
		e.cleanups.Wait()
		cat.Close()
		return nil, err
	}
	return e, nil
}

// load reads the catalog, ensures the default datastore and opens all.
func (e *Engine) load(ctx context.Context) error {
	recs, err := e.cat.Datastores()
	if err != nil {
		return fmt.Errorf("open engine: %w", err)
	}
	haveDefault := false
	for _, r := range recs {
		if r.Name == DefaultDatastore {
			haveDefault = true
		}
	}
	if !haveDefault {
		recs = append(recs, catalog.Datastore{Name: DefaultDatastore, Path: e.cfg.defaultDatastorePath()})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	ents := make([]*dsEntry, 0, len(recs))
	for _, r := range recs {
		ent := e.openDatastore(r)
		if ent.ds != nil && r.Name == DefaultDatastore && !haveDefault {
			if err := e.cat.PutDatastore(catalog.Datastore{Name: ent.name, Path: ent.path, UUID: ent.ds.UUID, Added: now()}); err != nil {
				return fmt.Errorf("open engine: %w", err)
			}
		}
		ents = append(ents, ent)
	}
	var online []*datastore.Datastore
	for _, ent := range ents {
		if ent.ds != nil {
			online = append(online, ent.ds)
		}
	}
	e.chain.FinishMigrations(online)
	for _, ent := range ents {
		vols := e.scanDatastore(ctx, ent)
		e.mu.Lock()
		e.datastores[ent.name] = ent
		e.installLocked(ent, vols)
		e.mu.Unlock()
	}
	e.chain.ResumeMerges(ctx, backup.SnapshotPrefix)
	e.repl.Start()
	e.log.Info("engine open", "data", e.cfg.DataDir, "datastores", len(e.datastores), "volumes", len(e.volumes))
	return nil
}

// openDatastore opens one catalog record. The default datastore is
// created when missing; any other must already carry its marker (an
// unmounted NFS path must not get a new, empty marker).
func (e *Engine) openDatastore(r catalog.Datastore) *dsEntry {
	ent := &dsEntry{name: r.Name, path: r.Path}
	var ds *datastore.Datastore
	var err error
	if r.Name == DefaultDatastore {
		ds, _, err = datastore.Init(r.Path, r.Name, now())
	} else {
		ds, err = datastore.Open(r.Path)
	}
	switch {
	case err != nil:
		ent.err = err
	case ds.Name != r.Name:
		ent.err = fmt.Errorf("the marker in %s names datastore %q, the catalog %q: re-add the path under its marker's name", r.Path, ds.Name, r.Name)
	default:
		ent.ds = ds
	}
	if ent.err != nil {
		e.log.Error("datastore offline", "datastore", r.Name, "path", r.Path, "err", ent.err)
	}
	return ent
}

// scanDatastore rediscovers and opens the volumes of an online datastore.
// The returned volumes are not yet visible; installLocked adds them.
func (e *Engine) scanDatastore(ctx context.Context, ent *dsEntry) []*volume {
	if ent.ds == nil {
		return nil
	}
	if removed, err := ent.ds.CleanStale(); err != nil {
		e.log.Warn("clean stale volume dirs", "datastore", ent.name, "err", err)
	} else if len(removed) > 0 {
		e.log.Info("removed leftovers of interrupted creates/removes", "datastore", ent.name, "dirs", removed)
	}
	files, bad, err := ent.ds.Scan()
	if err != nil {
		ent.err = err
		ent.ds = nil
		e.log.Error("datastore offline", "datastore", ent.name, "err", err)
		return nil
	}
	var vols []*volume
	for _, b := range bad {
		e.log.Error("volume not loaded", "datastore", ent.name, "err", b)
		var ve *datastore.VolumeError
		if errors.As(b, &ve) {
			vols = append(vols, &volume{name: ve.Volume, ds: ent,
				files: datastore.VolumeFiles{Name: ve.Volume, DescriptorPath: ve.Path},
				err:   b, jobs: map[string]*job.Job{}})
		}
		ent.problems = append(ent.problems, b)
	}
	for _, f := range files {
		v := &volume{name: f.Name, ds: ent, files: f, jobs: map[string]*job.Job{}}
		if f.Importing {
			v.err = errorf(errkind.ErrVolumeUnavailable, "the import into volume %s was interrupted (daemon stopped): remove it with `extrasphere volume rm %s` and import again",
				f.Name, f.Name)
			e.log.Error("volume not served", "volume", f.Name, "datastore", ent.name, "err", v.err)
			vols = append(vols, v)
			continue
		}
		if rf, fixed, err := chainops.RecoverTop(f, ent.ds.VolumeDir(f.Name)); err != nil {
			v.err = err
		} else {
			if fixed {
				e.log.Warn("completed an interrupted snapshot: new delta on the frozen top", "volume", f.Name)
			}
			v.files = rf
			e.chain.RemoveOrphans(f.Name, rf.Chain.Orphans)
			if v.cbt, v.err = e.openCBT(f.Name, rf.Size); v.err == nil { // cbt: load the bitmaps
				v.dev, v.layers, v.err = buildStack(ctx, rf, v.cbt, nil, e.openRestoreSource, e.cfg.Failpoints)
			}
		}
		if v.err != nil {
			e.log.Error("volume not served", "volume", f.Name, "datastore", ent.name, "err", v.err)
		}
		vols = append(vols, v)
	}
	return vols
}

// installLocked adds scanned volumes to the engine. A name that already
// exists on another datastore is not served from this one: it becomes a
// problem of this datastore and its device is closed.
func (e *Engine) installLocked(ent *dsEntry, vols []*volume) {
	for _, v := range vols {
		if old, ok := e.volumes[v.name]; ok || e.reserved[v.name] {
			where := "a volume being created"
			if ok {
				where = "datastore " + old.ds.name
			}
			err := fmt.Errorf("volume %s in %s is not served: the name is already used by %s; rename one of the directories and restart",
				v.name, ent.path, where)
			ent.problems = append(ent.problems, err)
			e.log.Error("duplicate volume name", "volume", v.name, "datastore", ent.name, "err", err)
			if v.dev != nil {
				v.dev.Close()
			}
			continue
		}
		e.volumes[v.name] = v
	}
}

// Close cancels running jobs, then flushes and closes every device and the
// catalog. The NBD server must have been shut down first.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.StopMirrorWaits() // nothing below waits for a replica that does not answer

	e.jobs.Close()
	e.repos.Close()

	e.mu.Lock()
	vols := make([]*volume, 0, len(e.volumes))
	for _, v := range e.volumes {
		vols = append(vols, v)
	}
	e.mu.Unlock()

	devs := make([]*gate.Gate, len(vols))
	for i, v := range vols {
		e.mu.Lock()
		devs[i] = v.dev
		v.dev = nil
		v.err = errkind.ErrClosed
		e.mu.Unlock()
	}
	// Flush and stop the mirrors of all volumes at once: each may take up
	// to a replica timeout (a replica that stopped answering), and one
	// after the other they would add up past the stop's bound.
	errsOf := make([][]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		if devs[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := devs[i].Flush(context.Background()); errors.Is(err, mirror.ErrStopping) {
				// The volume is flushed; its replica lacks writes (policy
				// block, StopMirrorWaits): the dirty log resends them at the
				// next start.
				e.log.Warn("stop: the replica lacks writes; they are resent at the next start", "volume", v.name)
			} else if err != nil {
				errsOf[i] = append(errsOf[i], fmt.Errorf("flush volume %s: %w", v.name, err))
			}
			if err := replication.CloseMirror(replVol{e, v}); err != nil { // mirror: an in-sync replica is flushed, its dirty log reset
				errsOf[i] = append(errsOf[i], err)
			}
		}()
	}
	wg.Wait()
	var errs []error
	for i, v := range vols {
		errs = append(errs, errsOf[i]...)
		if devs[i] == nil {
			continue
		}
		if err := devs[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("close volume %s: %w", v.name, err))
		}
		if err := closeCBT(v); err != nil { // cbt: a clean stop saves the bitmaps
			errs = append(errs, err)
		}
	}
	if err := e.cat.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close catalog: %w", err))
	}
	e.log.Info("engine closed", "volumes", len(vols))
	return errors.Join(errs...)
}

// newVolume is a served volume; st is its tracking state.
func newVolume(name string, ent *dsEntry, files datastore.VolumeFiles, dev *gate.Gate, layers blockdev.Device, st *cbt.State) *volume {
	return &volume{name: name, ds: ent, files: files, dev: dev, layers: layers, jobs: map[string]*job.Job{}, cbt: st}
}
