package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/flat"
)

// buildStack builds the device stack of one volume. It is the only place
// where an export's stack is assembled, so every filter is added here, in
// order from the leaf up:
//
//	flat (raw extent + descriptor)      leaf
//	[chain: deltas over the flat]       snapshots and clones (later issue)
//	[mirror: sync | async + journal]    replication (later issue)
//	[cbt.Tracker]                       changed-block tracking (later issue)
//	[checked]                           test builds only: asserts every request
//
// The checked device wraps the top so every request the NBD layer makes is
// validated; later filters will also get one checked hop each below them.
func buildStack(ctx context.Context, f datastore.VolumeFiles) (blockdev.Device, error) {
	_ = ctx // opening the leaf does no I/O worth cancelling yet
	leaf, err := flat.Open(f.DescriptorPath, flat.Options{ReadOnly: f.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", f.Name, err)
	}
	var dev blockdev.Device = leaf
	// Later filters (cbt, mirror, chain) slot in here, each taking dev
	// as its explicit next device.
	if blockdev.CheckedBuild {
		dev = blockdev.NewChecked(dev)
	}
	return dev, nil
}

// now is the engine's clock for records (catalog, markers).
func now() time.Time { return time.Now().UTC() }
