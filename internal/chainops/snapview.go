package chainops

import (
	"context"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
)

// snapshotView returns a device that reads v's layers 0..k (layer k is a
// frozen, named layer) as the snapshot stands, for a backup to read while
// the volume keeps running. It shares the open layers with v's stack and
// does not close them; v.snapMu must stay held while it is used, so no
// merge changes or closes those layers. It must only be read.
func snapshotView(v Vol, k int) (blockdev.Device, error) {
	base, deltas := v.Layers().(*chain.Chain).Layers()
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

// View opens snapshot name of v for reading (a backup reads it while the
// volume keeps running); v's SnapMu stays held while the view is used.
func (s *Service) View(v Vol, name string) (blockdev.Device, error) {
	k, err := findSnapshot(v, layersOf(v), name)
	if err != nil {
		return nil, err
	}
	return snapshotView(v, k)
}

// DropSnapshot merges away snapshot name of v, taken by the caller's
// operation (a backup's), if v has it; v's SnapMu is held.
func (s *Service) DropSnapshot(ctx context.Context, v Vol, name string) error {
	if _, err := findSnapshot(v, layersOf(v), name); err != nil {
		return nil // not taken
	}
	return s.mergeNewest(ctx, v, name)
}
