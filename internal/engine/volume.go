package engine

import (
	"path/filepath"

	"context"
	"errors"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Volume statuses.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// ListVolumes returns every volume, sorted by name, including those that
// could not be opened (Status "error").
func (e *Engine) ListVolumes(ctx context.Context) []apischema.VolumeInfo {
	e.mu.Lock()
	out := make([]apischema.VolumeInfo, 0, len(e.volumes))
	for _, v := range e.volumes {
		out = append(out, e.infoLocked(v))
	}
	e.mu.Unlock()
	for i := range out {
		out[i].Allocated = allocated(out[i].FlatPath)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GetVolume describes one volume.
func (e *Engine) GetVolume(ctx context.Context, name string) (apischema.VolumeInfo, error) {
	e.mu.Lock()
	v, ok := e.volumes[name]
	if !ok {
		e.mu.Unlock()
		return apischema.VolumeInfo{}, notFound(name)
	}
	in := e.infoLocked(v)
	e.mu.Unlock()
	in.Allocated = allocated(in.FlatPath)
	return in, nil
}

func (e *Engine) infoLocked(v *volume) apischema.VolumeInfo {
	in := apischema.VolumeInfo{
		Name:         v.name,
		Size:         v.files.Size,
		Datastore:    v.ds.name,
		Path:         v.files.DescriptorPath,
		FlatPath:     v.files.FlatPath,
		ReadOnly:     v.files.ReadOnly,
		Preallocated: v.files.Preallocated,
		Connections:  v.conns,
		Exports:      e.exportURIs(v.name),
		Status:       StatusOK,
	}
	for id := range v.jobs {
		in.Jobs = append(in.Jobs, id)
	}
	in.Layers = append([]string{v.files.DescriptorPath}, v.files.Chain.Deltas...)
	in.Top = in.Layers[len(in.Layers)-1]
	if !v.files.Chain.BaseOwn && len(v.files.Chain.Deltas) > 0 {
		// The origin is the volume whose directory holds the base.
		in.Origin = filepath.Base(filepath.Dir(v.files.DescriptorPath))
	}
	sort.Strings(in.Jobs)
	if v.err != nil {
		in.Status = StatusError
		in.Error = v.err.Error()
		in.Exports = nil // a broken volume is not served
	}
	return in
}

// allocated is the space the file occupies (st_blocks * 512), 0 if unknown.
func allocated(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return 0
}

func notFound(name string) error {
	return errorf(errkind.ErrVolumeNotFound, "volume %s does not exist (see `extrasphere volume list`)", name)
}

// lookupLocked returns a volume or a not-found error.
func (e *Engine) lookupLocked(name string) (*volume, error) {
	if e.closed {
		return nil, errorf(errkind.ErrClosed, "volume %s: the daemon is shutting down", name)
	}
	v, ok := e.volumes[name]
	if !ok {
		return nil, notFound(name)
	}
	return v, nil
}

// inUseLocked returns errkind.ErrVolumeInUse when v has connections, jobs or a
// change in progress; what says what the caller wanted to do.
func inUseLocked(v *volume, what string) error {
	switch {
	case v.op != "":
		return errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: %s is in progress; retry when it is done", what, v.name, v.op)
	case v.conns > 0:
		return errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: it has %d open NBD connection(s); detach it from its VM (or stop the client) first",
			what, v.name, v.conns)
	case len(v.jobs) > 0:
		return errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: %d job(s) running on it; wait for them or cancel them first",
			what, v.name, len(v.jobs))
	}
	return nil
}

// device returns the current stack of a volume.
func (e *Engine) device(name string) (blockdev.Device, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	if v.dev == nil {
		return nil, errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.err)
	}
	return v.dev, nil
}

// releaseWait bounds how long removeWhenReleased waits for NBD
// connections to go away.
const releaseWait = 5 * time.Second

// removeWhenReleased removes a volume once its NBD connections are gone.
// A failed qemu-img import leaves its connection open until the server
// notices the client exited, so the removal waits a little for it.
func (e *Engine) removeWhenReleased(name string) error {
	deadline := time.Now().Add(releaseWait)
	for {
		err := e.removeVolume(context.Background(), name, false, true)
		if !errors.Is(err, errkind.ErrVolumeInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
