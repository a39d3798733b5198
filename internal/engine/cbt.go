package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Changed-block tracking of volumes. Each served volume owns a cbt.State
// (v.cbt) for its whole life: loaded at open, shared by every tracker a
// pivot builds (wrapInner), saved clean at Close, deleted with the volume.
// Its files are $DATA/cbt/<volume>.bitmaps and .al, keyed by the volume's
// name, which is unique in the daemon and never changes; docs/FORMATS.md
// says why they are not in the volume directory.

// DefaultBitmap is the bitmap name `cbt enable` uses without --bitmap.
const DefaultBitmap = "cbt"

func (e *Engine) cbtOptions(name string, size int64) cbt.Options {
	return cbt.Options{Dir: filepath.Join(e.cfg.DataDir, "cbt"), Volume: name, Size: size,
		Failpoints: e.cfg.Failpoints, Logger: e.log}
}

// openCBT loads the tracking state of a volume found at start. An error
// means the volume must not be served: its writes could not be tracked.
// A volume whose name another datastore already serves is not served
// either (installLocked): it gets no state and its files stay untouched.
func (e *Engine) openCBT(name string, size int64) (*cbt.State, error) {
	e.mu.Lock()
	_, dup := e.volumes[name]
	e.mu.Unlock()
	if dup {
		return nil, nil
	}
	st, err := cbt.Open(e.cbtOptions(name, size))
	if err != nil {
		return nil, errorf(errkind.ErrVolumeUnavailable, "volume %s: %w", name, err)
	}
	return st, nil
}

// freshCBT is the empty tracking state of a volume being created.
func (e *Engine) freshCBT(name string, size int64) (*cbt.State, error) {
	st, err := cbt.Fresh(e.cbtOptions(name, size))
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	return st, nil
}

// EnableCBT adds a bitmap to a volume: from this instant (I/O is held
// for it) every write is recorded, and new NBD connections can select
// the meta context qemu:dirty-bitmap:NAME.
func (e *Engine) EnableCBT(ctx context.Context, vol, name string) (apischema.BitmapInfo, error) {
	if name == "" {
		name = DefaultBitmap
	}
	if err := cbt.CheckName(name); err != nil {
		return apischema.BitmapInfo{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	var info cbt.BitmapInfo
	err := e.cbtChange(vol, "enable changed-block tracking on", true, func(v *volume) (err error) {
		info, err = v.cbt.Enable(name, now())
		return err
	})
	if err != nil {
		return apischema.BitmapInfo{}, err
	}
	e.log.Info("cbt bitmap enabled", "volume", vol, "bitmap", name)
	return apischema.BitmapInfo(info), nil
}

// ClearCBT resets a bitmap to all clean at one instant (I/O is held): it
// then holds the writes made from that instant on.
func (e *Engine) ClearCBT(ctx context.Context, vol, name string) (apischema.BitmapInfo, error) {
	var info cbt.BitmapInfo
	err := e.cbtChange(vol, "clear a bitmap of", false, func(v *volume) (err error) {
		info, err = v.cbt.Clear(name)
		return err
	})
	if err != nil {
		return apischema.BitmapInfo{}, err
	}
	e.log.Info("cbt bitmap cleared", "volume", vol, "bitmap", name)
	return apischema.BitmapInfo(info), nil
}

// RemoveCBT forgets a bitmap; its meta context is no longer offered.
func (e *Engine) RemoveCBT(ctx context.Context, vol, name string) error {
	err := e.cbtChange(vol, "remove a bitmap of", true, func(v *volume) error { return v.cbt.Remove(name) })
	if err != nil {
		return err
	}
	e.log.Info("cbt bitmap removed", "volume", vol, "bitmap", name)
	return nil
}

// ListCBT describes a volume's bitmaps.
func (e *Engine) ListCBT(ctx context.Context, vol string) (apischema.CBTInfo, error) {
	e.mu.Lock()
	v, err := e.cbtVolumeLocked(vol)
	e.mu.Unlock()
	if err != nil {
		return apischema.CBTInfo{}, err
	}
	return apischema.CBTInfo{Volume: vol, Bitmaps: bitmapInfos(v.cbt.List()), Recovered: v.cbt.Recovered(),
		Problems: v.cbt.Problems(), URI: e.UnixURI(vol)}, nil
}

// cbtVolumeLocked returns a served volume with its tracking state.
func (e *Engine) cbtVolumeLocked(vol string) (*volume, error) {
	v, err := e.lookupLocked(vol)
	if err != nil {
		return nil, err
	}
	if v.err != nil || v.dev == nil || v.cbt == nil {
		return nil, errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", vol, v.err)
	}
	return v, nil
}

// cbtChange runs change with the volume's I/O held, so it happens at one
// instant between writes; with rebuild the stack below the gate is
// rebuilt afterwards, so the tracker's meta contexts follow the bitmaps.
// It holds snapMu like a snapshot: a merge, promote or migration running
// on the volume makes it fail with errkind.ErrVolumeInUse rather than wait.
func (e *Engine) cbtChange(vol, what string, rebuild bool, change func(v *volume) error) error {
	e.mu.Lock()
	v, err := e.cbtVolumeLocked(vol)
	if err == nil && v.op != "" {
		err = errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: %s is in progress; retry when it is done", what, vol, v.op)
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if !v.snapMu.TryLock() {
		return errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: a snapshot removal, promote or migration is running on it (see `extrasphere job list`); retry when it is done",
			what, vol)
	}
	defer v.snapMu.Unlock()
	p, err := e.beginPivot(v)
	if err != nil {
		return err
	}
	defer p.end()
	if err := change(v); err != nil {
		return cbtError(err)
	}
	if rebuild {
		p.install(p.layers, nil) // the tracker's meta contexts follow the bitmaps
	}
	p.commit()
	return nil
}

// cbtError tags a tracking error with the engine sentinel the API maps.
func cbtError(err error) error {
	switch {
	case errors.Is(err, cbt.ErrInvalidName), errors.Is(err, cbt.ErrTooManyBitmaps):
		return errorf(errkind.ErrInvalidArgument, "%w", err)
	case errors.Is(err, cbt.ErrClosed):
		return errorf(errkind.ErrClosed, "%w", err)
	}
	return err
}

// markAllCBT makes every block dirty in every bitmap of v: for a change
// of content no write went through the tracker for (a revert).
func markAllCBT(v *volume) error {
	if v.cbt == nil {
		return nil
	}
	return v.cbt.MarkAll()
}

// closeCBT saves v's bitmaps at a clean stop (its device is closed).
func closeCBT(v *volume) error {
	if v.cbt == nil {
		return nil
	}
	return v.cbt.Close()
}

// deleteCBT removes v's tracking files (the volume is being removed).
func deleteCBT(v *volume) error {
	if v.cbt == nil {
		return nil
	}
	return v.cbt.Delete()
}

// bitmapInfos converts the tracker's bitmap descriptions for the API.
func bitmapInfos(bs []cbt.BitmapInfo) []apischema.BitmapInfo {
	out := make([]apischema.BitmapInfo, len(bs))
	for i, b := range bs {
		out[i] = apischema.BitmapInfo(b)
	}
	return out
}
