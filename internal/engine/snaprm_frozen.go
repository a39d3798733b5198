package engine

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
// 3 two adjacent layers named alike, after 4 an orphan: resumeMerges and
// removeOrphans finish each at the next start.

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
func (e *Engine) startFrozenMerge(v *volume, c *chain.Chain, k int, unlock func()) (*job.Job, error) {
	m, err := chain.NewFrozenMerger(c, k+1)
	if err != nil {
		unlock()
		return nil, err
	}
	grain := int64(c.Caps().PrefBlock)
	e.mu.Lock()
	j, err := e.startJobLocked(v, KindConsolidate, m.Grains()*grain, func(ctx context.Context, j *job.Job) error {
		defer unlock()
		return e.mergeFrozen(ctx, v, m, k, j)
	}, nil)
	e.mu.Unlock()
	if err != nil {
		unlock()
		return nil, err
	}
	return j, nil
}

// mergeFrozen runs steps 2-5. v.snapMu is held.
func (e *Engine) mergeFrozen(ctx context.Context, v *volume, m *chain.Merger, k int, j *job.Job) error {
	ls := layersOf(v)
	if k+2 >= len(ls) {
		return fmt.Errorf("volume %s: layer %d is not under a frozen layer", v.name, k)
	}
	below, mid, above := ls[k], ls[k+1], ls[k+2]
	name, at := mid.snapshot()
	if j != nil {
		j.SetDetail("merging " + filepath.Base(mid.path) + " into " + filepath.Base(below.path))
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("remove snapshot of volume %s: %s: %w", v.name, step, err)
	}
	if n, _ := below.snapshot(); n != name || name == "" {
		grain := int64(v.layers.Caps().PrefBlock)
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
		e.hit(fpFrozenAfterCopy)
		if err := below.setSnapshot(name, at); err != nil {
			return fail("name "+filepath.Base(below.path), err)
		}
		e.hit(fpFrozenAfterName)
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
	e.hit(fpFrozenAfterRepint)
	// The owner map is copied with I/O held: a grain the top allocates
	// meanwhile must be in it.
	p, err := e.beginPivot(v)
	if err != nil {
		return fail("hold I/O", err)
	}
	nd, err := m.Without()
	if err != nil {
		p.end()
		return fail("rebuild chain", err)
	}
	p.install(nd, func(f *datastore.VolumeFiles) {
		f.Chain.Deltas = slices.Delete(slices.Clone(f.Chain.Deltas), k, k+1)
		f.Chain.Own--
	})
	p.commit()
	stall := p.end()
	err = errors.Join(mid.delta.Close(), os.Remove(mid.path), datastore.SyncDir(filepath.Dir(mid.path)))
	if err != nil {
		// The chain no longer reads it; the next start deletes the orphan.
		e.log.Warn("delete merged delta", "volume", v.name, "path", mid.path, "err", err)
	}
	e.hit(fpFrozenAfterUnlink)
	e.log.Info("snapshot removed", "volume", v.name, "merged", filepath.Base(mid.path), "into", filepath.Base(below.path), "io_held", stall)
	return nil
}

// removeOrphans deletes deltas a crash left after step 4 of a frozen
// merge: their content is in their parent, and nothing names them.
func (e *Engine) removeOrphans(vol string, orphans []string) {
	for _, p := range orphans {
		err := os.Remove(p)
		if err == nil {
			err = datastore.SyncDir(filepath.Dir(p))
		}
		if err != nil {
			e.log.Error("delete merged delta left by a crash", "volume", vol, "path", p, "err", err)
			continue
		}
		e.log.Warn("deleted a merged delta left by a crash", "volume", vol, "path", p)
	}
}

// interruptedFrozenMerge returns the layer k of an interrupted frozen
// merge (an own layer under a frozen one that is un-named, or named like
// the one above it), or -1.
func interruptedFrozenMerge(ls []layer) int {
	for k := 0; k+2 < len(ls); k++ {
		if !ls[k].own {
			continue
		}
		name, _ := ls[k].snapshot()
		if next, _ := ls[k+1].snapshot(); name == "" || name == next {
			return k
		}
	}
	return -1
}
