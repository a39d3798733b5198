package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Datastore statuses.
const (
	DatastoreOnline  = "online"
	DatastoreOffline = "offline"
)

// ListDatastores returns every datastore, sorted by name, with its free
// space.
func (e *Engine) ListDatastores(ctx context.Context) []apischema.DatastoreInfo {
	e.mu.Lock()
	out := make([]apischema.DatastoreInfo, 0, len(e.datastores))
	ents := make([]*dsEntry, 0, len(e.datastores))
	for _, d := range e.datastores {
		out = append(out, e.dsInfoLocked(d))
		ents = append(ents, d)
	}
	e.mu.Unlock()
	for i, d := range ents {
		fillSpace(d, &out[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// fillSpace adds statfs figures to in (outside Engine.mu: statfs on a
// hung NFS mount blocks).
func fillSpace(d *dsEntry, in *apischema.DatastoreInfo) {
	if d.ds == nil {
		return
	}
	sp, err := d.ds.Space()
	if err != nil {
		in.Problems = append(in.Problems, err.Error())
		return
	}
	in.Total, in.Free = sp.Total, sp.Free
}

func (e *Engine) dsInfoLocked(d *dsEntry) apischema.DatastoreInfo {
	in := apischema.DatastoreInfo{Name: d.name, Path: d.path, Status: DatastoreOnline}
	if d.ds != nil {
		in.UUID = d.ds.UUID
	} else {
		in.Status = DatastoreOffline
		if d.err != nil {
			in.Error = d.err.Error()
		}
	}
	for _, v := range e.volumes {
		if v.ds == d {
			in.Volumes++
		}
	}
	for _, p := range d.problems {
		in.Problems = append(in.Problems, p.Error())
	}
	return in
}

// AddDatastore adds the directory path as datastore name. The directory is
// created if needed and gets a marker if it has none; a directory that
// already has a marker is adopted with its volumes, and must be added
// under the name its marker records. The name, the path and every volume
// name it brings must be new to the daemon.
func (e *Engine) AddDatastore(ctx context.Context, name, path string) (apischema.DatastoreInfo, error) {
	if err := datastore.CheckName("datastore", name); err != nil {
		return apischema.DatastoreInfo{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	if !filepath.IsAbs(path) {
		return apischema.DatastoreInfo{}, errorf(errkind.ErrInvalidArgument, "datastore path %q must be absolute", path)
	}
	path = filepath.Clean(path)
	if err := e.reserveDatastore(name, path); err != nil {
		return apischema.DatastoreInfo{}, err
	}
	defer func() {
		e.mu.Lock()
		delete(e.reserved, "ds:"+name)
		e.mu.Unlock()
	}()

	ds, created, err := datastore.Init(path, name, now())
	if err != nil {
		return apischema.DatastoreInfo{}, fmt.Errorf("add datastore %s: %w", name, err)
	}
	if ds.Name != name {
		return apischema.DatastoreInfo{}, errorf(errkind.ErrInvalidArgument, "the directory %s is already datastore %q (its marker says so): add it as %q",
			path, ds.Name, ds.Name)
	}
	ent := &dsEntry{name: name, path: path, ds: ds}
	vols := e.scanDatastore(ctx, ent)
	if ent.ds == nil {
		return apischema.DatastoreInfo{}, fmt.Errorf("add datastore %s: %w", name, ent.err)
	}

	e.mu.Lock()
	if err := e.checkNewVolumesLocked(name, vols); err != nil {
		e.mu.Unlock()
		closeAll(vols)
		return apischema.DatastoreInfo{}, err
	}
	if err := e.cat.PutDatastore(catalog.Datastore{Name: name, Path: path, UUID: ds.UUID, Added: now()}); err != nil {
		e.mu.Unlock()
		closeAll(vols)
		return apischema.DatastoreInfo{}, fmt.Errorf("add datastore %s: %w", name, err)
	}
	e.datastores[name] = ent
	e.installLocked(ent, vols)
	in := e.dsInfoLocked(ent)
	e.mu.Unlock()
	fillSpace(ent, &in)
	e.log.Info("datastore added", "datastore", name, "path", path, "new_marker", created, "volumes", len(vols))
	return in, nil
}

// reserveDatastore checks that name and path are new and reserves name.
func (e *Engine) reserveDatastore(name, path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errorf(errkind.ErrClosed, "add datastore %s: the daemon is shutting down", name)
	}
	if _, ok := e.datastores[name]; ok || e.reserved["ds:"+name] {
		return errorf(errkind.ErrDatastoreExists, "datastore %s already exists: choose another name", name)
	}
	for _, d := range e.datastores {
		if samePath(d.path, path) {
			return errorf(errkind.ErrDatastoreExists, "path %s is already datastore %s", path, d.name)
		}
	}
	e.reserved["ds:"+name] = true
	return nil
}

// checkNewVolumesLocked refuses a datastore that brings a volume whose
// name the daemon already serves.
func (e *Engine) checkNewVolumesLocked(ds string, vols []*volume) error {
	var clash []string
	for _, v := range vols {
		if old, ok := e.volumes[v.name]; ok {
			clash = append(clash, fmt.Sprintf("volume %s is on datastore %s already", v.name, old.ds.name))
		} else if e.reserved[v.name] {
			clash = append(clash, fmt.Sprintf("volume %s is being created", v.name))
		}
	}
	if len(clash) > 0 {
		return errorf(errkind.ErrVolumeExists, "add datastore %s: volume names must be unique across datastores; rename or remove these first: %s",
			ds, strings.Join(clash, "; "))
	}
	return nil
}

// samePath compares two directories, resolving symlinks when possible.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

func closeAll(vols []*volume) {
	for _, v := range vols {
		if v.dev != nil {
			v.dev.Close()
		}
	}
}
