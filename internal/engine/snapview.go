package engine

import (
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
)

// snapshotView returns a device that reads v's layers 0..k (layer k is a
// frozen, named layer) as the snapshot stands, for a backup to read while
// the volume keeps running. It shares the open layers with v's stack and
// does not close them; v.snapMu must stay held while it is used, so no
// merge changes or closes those layers. It must only be read.
func snapshotView(v *volume, k int) (blockdev.Device, error) {
	base, deltas := v.layers.(*chain.Chain).Layers()
	if k == 0 {
		return unowned{base}, nil
	}
	ds := make([]chain.Delta, k)
	for i := range ds {
		ds[i] = unownedDelta{deltas[i]}
	}
	return chain.New(unowned{base}, ds)
}

// unowned and unownedDelta keep a view's Close from closing shared layers.
type unowned struct{ blockdev.Device }

func (unowned) Close() error { return nil }

type unownedDelta struct{ chain.Delta }

func (unownedDelta) Close() error { return nil }
