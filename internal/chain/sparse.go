package chain

import (
	"context"

	"github.com/extrasphere/extrasphere/internal/sparse"
)

// SparseDelta adapts a VMDK hosted sparse extent (sparse.Extent) to Delta.
type SparseDelta struct {
	*sparse.Extent
}

var _ Delta = SparseDelta{}

// Kind maps the extent's grain table entry.
func (e SparseDelta) Kind(grain int64) Kind {
	switch e.Lookup(grain).Kind {
	case sparse.Data:
		return Data
	case sparse.Zero:
		return Zero
	}
	return Unallocated
}

// WriteGrain writes in place; with fua the data is synced before return
// (the grain is already allocated, so no table entry is involved).
func (e SparseDelta) WriteGrain(ctx context.Context, grain int64, off int, p []byte, fua bool) error {
	if err := e.Extent.WriteGrain(ctx, grain, off, p); err != nil {
		return err
	}
	if fua {
		return e.Extent.Flush(ctx)
	}
	return nil
}
