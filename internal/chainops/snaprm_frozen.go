package chainops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// Removing a snapshot that is not the newest. Its layer L (k) is frozen,
// and so is the layer M above it, which holds the next snapshot N. M is
// merged DOWN into L, never the other way, so no byte of the base moves
// into a sparse delta and no layer is renamed on disk:
//
//  1. un-name L (before the job starts: the removal's commit point);
//  2. copy every grain M holds into L, flush L. Every view but L's own
//     stays the same, and L's own view is no snapshot any more;
//  3. name L like M: both layers now read as snapshot N;
//  4. re-point M's child to L: M is an orphan (datastore.ReadChain);
//  5. install the chain without M (I/O held briefly), delete M.
//
// A crash after 1 or 2 leaves an unnamed layer under a frozen one, after
// 3 two adjacent layers named alike, after 4 an orphan: ResumeMerges and
// RemoveOrphans finish each at the next start.

// Failpoints of a frozen merge, in order.
const (
	fpFrozenAfterCopy   = "snaprm.after-copy"
	fpFrozenAfterName   = "snaprm.after-name"
	fpFrozenAfterRepint = "snaprm.after-repoint"
	fpFrozenAfterUnlink = "snaprm.after-unlink"
)

// startFrozenMerge merges layer k+1 of v into layer k (see above) as a
// job; unlock (of v.snapMu) runs when it ends. Layer k is already
// un-named, or named like layer k+1 when a crash interrupted step 3-5.
func (s *Service) startFrozenMerge(v Vol, c *chain.Chain, k int, unlock func()) (*job.Job, error) {
	m, err := chain.NewFrozenMerger(c, k+1)
	if err != nil {
		unlock()
		return nil, err
	}
	grain := int64(c.Caps().PrefBlock)
	return s.startHeld(v, KindConsolidate, m.Grains()*grain, unlock, nil, func(ctx context.Context, j *job.Job) error {
		return s.mergeFrozen(ctx, v, m, k, j)
	})
}

// mergeFrozen runs steps 2-5. v.snapMu is held.
func (s *Service) mergeFrozen(ctx context.Context, v Vol, m *chain.Merger, k int, j *job.Job) error {
	ls := layersOf(v)
	if k+2 >= len(ls) {
		return fmt.Errorf("volume %s: layer %d is not under a frozen layer", v.Name(), k)
	}
	below, mid, above := ls[k], ls[k+1], ls[k+2]
	name, at := mid.snapshot()
	if j != nil {
		j.SetDetail("merging " + filepath.Base(mid.path) + " into " + filepath.Base(below.path))
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("remove snapshot of volume %s: %s: %w", v.Name(), step, err)
	}
	if n, _ := below.snapshot(); n != name || name == "" {
		grain := int64(v.Layers().Caps().PrefBlock)
		if _, err := m.Copy(ctx, 0, 0, func(n int64) {
			if j != nil {
				j.SetDone(n * grain)
			}
		}); err != nil {
			return fail("copy", err)
		}
		if err := m.Finish(ctx); err != nil { // flushes the target
			return fail("flush", err)
		}
		s.host.Step(fpFrozenAfterCopy)
		if err := below.setSnapshot(name, at); err != nil {
			return fail("name "+filepath.Base(below.path), err)
		}
		s.host.Step(fpFrozenAfterName)
	}
	hint, err := filepath.Rel(filepath.Dir(above.path), below.path)
	if err != nil {
		hint = below.path
	}
	cid, err := below.cid()
	if err != nil {
		return fail("read CID", err)
	}
	if err := above.delta.SetParent(sparse.ParentRef{FileNameHint: hint, CID: cid}); err != nil {
		return fail("re-point "+filepath.Base(above.path), err)
	}
	s.host.Step(fpFrozenAfterRepint)
	// The owner map is copied with I/O held: a grain the top allocates
	// meanwhile must be in it.
	p, err := v.BeginPivot()
	if err != nil {
		return fail("hold I/O", err)
	}
	nd, err := m.Without()
	if err != nil {
		p.End()
		return fail("rebuild chain", err)
	}
	p.Install(nd, func(f *datastore.VolumeFiles) {
		f.Chain.Deltas = slices.Delete(slices.Clone(f.Chain.Deltas), k, k+1)
		f.Chain.Own--
	})
	p.Commit()
	stall := p.End()
	err = errors.Join(mid.delta.Close(), os.Remove(mid.path), datastore.SyncDir(filepath.Dir(mid.path)))
	if err != nil {
		// The chain no longer reads it; the next start deletes the orphan.
		s.log.Warn("delete merged delta", "volume", v.Name(), "path", mid.path, "err", err)
	}
	s.host.Step(fpFrozenAfterUnlink)
	s.log.Info("snapshot removed", "volume", v.Name(), "merged", filepath.Base(mid.path), "into", filepath.Base(below.path), "io_held", stall)
	return nil
}
