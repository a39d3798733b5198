package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// buildStack builds the device stack of one volume. It is the only place
// where an export's stack is assembled, so every filter is added here, in
// order from the top down:
//
//	gate                                pivot point: snapshots, consolidation and
//	                                    migration swap what is below it under I/O
//	[checked]                           test builds only: asserts every request
//	cbt.Tracker                         changed-block tracking (the volume's cbt.State)
//	mirror.Filter                       sync replication (the volume's mirror, internal/replication)
//	chain (deltas over the base) | flat the volume's layers
//
// openLayers builds what is below the gate. At run time the stack changes
// only through a pivot (pivot.go), which wraps new layers the same way
// (wrapInner) and installs them behind the gate.
// st is the volume's tracking state, which outlives every stack; fp arms
// the flat files' fdatasync failpoint (fault tests; nil in production).
func buildStack(ctx context.Context, f datastore.VolumeFiles, st *cbt.State, mir *mirror.Mirror, src restoreSource, fp *failpoint.Set) (dev *gate.Gate, layers blockdev.Device, err error) {
	layers, err = openLayers(ctx, f, src, fp)
	if err != nil {
		return nil, nil, err
	}
	return gate.New(wrapInner(st, mir, layers)), layers, nil
}

// wrapInner adds the filters that sit between the gate and the layers,
// each taking dev as its explicit next device. The tracker is rebuilt
// over the new layers at every pivot with the volume's same state st (nil
// only for a volume that is not served), and so is the mirror's filter
// (mir nil when the volume has no mirror). The tracker sits above the
// mirror: a write is recorded before the replica or the layers see it.
func wrapInner(st *cbt.State, mir *mirror.Mirror, dev blockdev.Device) blockdev.Device {
	if mir != nil {
		dev = mir.Filter(dev)
	}
	if st != nil {
		dev = cbt.New(dev, st)
	}
	if blockdev.CheckedBuild {
		dev = blockdev.NewChecked(dev)
	}
	return dev
}

// openLayers opens the base and every delta of a volume. The base and the
// volume's own deltas open writable (consolidation writes into them); the
// layers of a clone's origin open read-only.
//
// A base whose descriptor says ddb.extrasphere.restoreFrom is being
// restored instantly from a backup (instant.go): it opens as a fill.Device
// over the flat file and the backup, which src opens.
func openLayers(ctx context.Context, f datastore.VolumeFiles, src restoreSource, fp *failpoint.Set) (blockdev.Device, error) {
	nd := len(f.Chain.Deltas)
	shared := !f.Chain.BaseOwn // the base belongs to the origin of a clone
	fb, err := flat.Open(f.DescriptorPath, flat.Options{ReadOnly: f.ReadOnly || shared, Failpoints: fp})
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", f.Name, err)
	}
	var base blockdev.Device = fb
	if base, err = restoringBase(ctx, f, fb, src); err != nil {
		fb.Close()
		return nil, fmt.Errorf("open volume %s: %w", f.Name, err)
	}
	if nd == 0 {
		return base, nil
	}
	deltas := make([]chain.Delta, 0, nd)
	closeAll := func() {
		for _, d := range deltas {
			d.Close()
		}
		base.Close()
	}
	for i, p := range f.Chain.Deltas {
		ro := f.ReadOnly || i < nd-f.Chain.Own
		ext, err := sparse.Open(p, ro)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open volume %s: delta %s: %w", f.Name, p, err)
		}
		if ext.Capacity() != base.Size() {
			ext.Close()
			closeAll()
			return nil, fmt.Errorf("open volume %s: delta %s is %d bytes, base %d: %w",
				f.Name, p, ext.Capacity(), base.Size(), datastore.ErrBadChain)
		}
		deltas = append(deltas, chain.SparseDelta{Extent: ext})
	}
	c, err := chain.New(base, deltas)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("open volume %s: %w", f.Name, err)
	}
	return c, nil
}

// now is the engine's clock for records (catalog, markers).
func now() time.Time { return time.Now().UTC() }
