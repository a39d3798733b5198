package engine

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// SetReadOnly records the read-only flag in the volume's descriptor (the
// ddb.extrasphere.readOnly key, rewritten atomically) and reopens the
// stack. The volume must have no open connection: a connected client
// negotiated the old flags.
func (e *Engine) SetReadOnly(ctx context.Context, name string, ro bool) (apischema.VolumeInfo, error) {
	e.mu.Lock()
	v, err := e.lookupLocked(name)
	e.mu.Unlock()
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	// The stack is rebuilt: no pivot may run meanwhile (snapMu before
	// Engine.mu, doc.go).
	if !v.snapMu.TryLock() {
		return apischema.VolumeInfo{}, errorf(errkind.ErrVolumeInUse, "cannot change read-only on volume %s: a snapshot, merge, promote, migration or mirror change is running on it (see `extrasphere job list`); retry when it is done", name)
	}
	defer v.snapMu.Unlock()
	e.mu.Lock()
	if cur, err := e.lookupLocked(name); err != nil || cur != v {
		e.mu.Unlock()
		return apischema.VolumeInfo{}, notFound(name) // removed meanwhile
	}
	err = inUseLocked(v, "change read-only on")
	if err == nil && v.err != nil {
		err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.err)
	}
	if err == nil && !v.files.Chain.BaseOwn {
		// The flag lives in the base descriptor, which is the origin's.
		err = errorf(errkind.ErrInvalidArgument, "volume %s is a linked clone: promote it before changing read-only", name)
	}
	if err != nil {
		e.mu.Unlock()
		return apischema.VolumeInfo{}, err
	}
	if v.files.ReadOnly == ro {
		e.mu.Unlock()
		return e.GetVolume(ctx, name)
	}
	v.op = "read-only change"
	old, oldLayers := v.dev, v.layers
	v.dev = nil
	files := v.files
	e.mu.Unlock()

	newFiles, dev, layers, err := e.rewriteReadOnly(ctx, files, old, oldLayers, ro, v.cbt, v.mirror())

	e.mu.Lock()
	v.op = ""
	v.dev, v.layers = dev, layers
	if newFiles.Name != "" {
		v.files = newFiles
	}
	if err != nil && dev == nil {
		v.err = err
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.VolumeInfo{}, err
	}
	e.log.Info("volume read-only changed", "volume", name, "read_only", ro)
	return e.GetVolume(ctx, name)
}

// rewriteReadOnly flushes and closes old, rewrites the descriptor and
// opens a new stack (dev and the layers below its gate).
func (e *Engine) rewriteReadOnly(ctx context.Context, f datastore.VolumeFiles, old *gate.Gate, oldLayers blockdev.Device, ro bool, st *cbt.State, mir *mirror.Mirror) (nf datastore.VolumeFiles, dev *gate.Gate, layers blockdev.Device, err error) {
	if err := old.Flush(ctx); err != nil {
		// Nothing changed: the old stack stays, with its layers.
		return f, old, oldLayers, fmt.Errorf("set read-only on volume %s: flush: %w", f.Name, err)
	}
	if err := old.Close(); err != nil {
		e.log.Warn("close device", "volume", f.Name, "err", err)
	}
	werr := writeReadOnly(f.DescriptorPath, ro)
	nf, err = datastore.ReadVolume(f.Name, f.DescriptorPath)
	if err != nil {
		return datastore.VolumeFiles{}, nil, nil, fmt.Errorf("set read-only on volume %s: %w", f.Name, err)
	}
	nf.Chain = f.Chain // only the base descriptor changed
	dev, layers, err = buildStack(ctx, nf, st, mir, e.openRestoreSource, e.cfg.Failpoints)
	if err != nil {
		return nf, nil, nil, fmt.Errorf("set read-only on volume %s: reopen: %w", f.Name, err)
	}
	if werr != nil {
		return nf, dev, layers, fmt.Errorf("set read-only on volume %s: %w", f.Name, werr)
	}
	return nf, dev, layers, nil
}

// writeReadOnly sets ddb.extrasphere.readOnly in a descriptor file.
func writeReadOnly(path string, ro bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read descriptor: %w", err)
	}
	d, err := vmdk.Parse(b)
	if err != nil {
		return fmt.Errorf("parse descriptor %s: %w", path, err)
	}
	d.DDB.Set(vmdk.DDBExtrasphereReadOnly, strconv.FormatBool(ro))
	if err := vmdk.WriteFileAtomic(path, d.Marshal()); err != nil {
		return fmt.Errorf("write descriptor %s: %w", path, err)
	}
	return nil
}
