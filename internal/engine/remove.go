package engine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// RemoveVolume deletes a volume and its files. A volume with open NBD
// connections or running jobs is refused with errkind.ErrVolumeInUse unless force
// is set; with force its jobs are cancelled and its device is closed under
// the connections, whose next requests fail.
func (e *Engine) RemoveVolume(ctx context.Context, name string, force bool) error {
	return e.removeVolume(ctx, name, force, false)
}

// removeVolume is RemoveVolume; duringClose lets a job's cleanup remove
// the volume it created while Close waits for that job.
func (e *Engine) removeVolume(ctx context.Context, name string, force, duringClose bool) error {
	e.mu.Lock()
	v, ok := e.volumes[name]
	var err error
	switch {
	case e.closed && !duringClose:
		err = errorf(errkind.ErrClosed, "volume %s: the daemon is shutting down", name)
	case !ok:
		err = notFound(name)
	}
	if err != nil {
		e.mu.Unlock()
		return err
	}
	for _, p := range ownLayerPaths(v.files) {
		if users := e.cloneUsersLocked(v, p); len(users) > 0 {
			e.mu.Unlock()
			return errorf(errkind.ErrVolumeInUse, "cannot remove volume %s: linked clone(s) %v use its layer %s; promote or remove them first",
				name, users, filepath.Base(p))
		}
	}
	if v.mirror() != nil && !duringClose {
		e.mu.Unlock()
		return errorf(errkind.ErrVolumeInUse, "cannot remove volume %s: it has a mirror; remove it first with `extrasphere mirror rm %s`", name, name)
	}
	if err := inUseLocked(v, "remove"); err != nil && (!force || v.op != "") {
		e.mu.Unlock()
		if force {
			return err
		}
		return fmt.Errorf("%w (or use --force)", err)
	}
	v.op = "remove"
	if v.gone != nil {
		close(v.gone) // forced: connections are dropped, not left failing
		v.gone = nil
	}
	dev := v.dev
	v.dev = nil
	conns := v.conns
	for _, j := range v.jobs {
		if _, err := e.jobs.Cancel(j.ID()); err != nil {
			e.log.Warn("cancel job", "job", j.ID(), "err", err)
		}
	}
	e.mu.Unlock()

	if dev != nil {
		if err := dev.Close(); err != nil {
			e.log.Warn("close device of removed volume", "volume", name, "err", err)
		}
	}
	// cbt: the bitmaps go first; a crash before the directory goes leaves
	// a volume without bitmaps (the next backup is full), never bitmaps
	// that a new volume of the same name would inherit.
	err = deleteCBT(v)
	if err == nil {
		err = v.ds.ds.RemoveVolume(name)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	v.op = ""
	if err != nil {
		v.err = fmt.Errorf("remove failed, files may be left in %s: %w", v.ds.ds.VolumeDir(name), err)
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	delete(e.volumes, name)
	if v.repl.ReplicaLocked() != nil {
		if err := e.cat.DeleteReplica(name); err != nil {
			e.log.Warn("forget replica record", "volume", name, "err", err)
		}
	}
	e.log.Info("volume removed", "volume", name, "datastore", v.ds.name, "force", force, "connections", conns)
	return nil
}

// ownLayerPaths are the files in the volume's own directory: its base
// (unless it is a clone) and its own deltas.
func ownLayerPaths(f datastore.VolumeFiles) []string {
	cf := f.Chain
	var out []string
	if cf.BaseOwn {
		out = append(out, f.DescriptorPath)
	}
	return append(out, cf.Deltas[len(cf.Deltas)-cf.Own:]...)
}
