package chainops

import (
	"context"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/fill"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// RestoreFromKey, in a base descriptor's disk database, marks a base
// being restored instantly from a backup ("REPO/BACKUP/VOLUME"): the
// engine serves it as a fill.Device over the flat file and the backup
// (internal/engine/instant.go); Promote fills the flat file and removes
// the key, the commit point.
const RestoreFromKey = "ddb.extrasphere.restoreFrom"

// promoteRestore is Promote of a volume served from a backup (see the
// top of this file). v.snapMu is held.
func (s *Service) promoteRestore(ctx context.Context, v Vol, fd *fill.Device, j *job.Job) error {
	j.SetDetail("copying the backup into the volume's flat file")
	buf := make([]byte, v.Layers().Caps().PrefBlock)
	if cs := fd.Caps().PrefBlock; int(cs) > len(buf) {
		buf = make([]byte, cs)
	}
	chunk := int64(fd.Caps().PrefBlock)
	for c := range fd.Chunks() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fd.Fill(ctx, c, buf); err != nil {
			return fmt.Errorf("promote %s: %w", v.Name(), err)
		}
		j.SetDone(min(int64(c+1)*chunk, v.Files().Size))
	}
	if err := fd.Flat().Flush(ctx); err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	// The commit point: the base is the flat file alone from now on.
	d, err := flat.ReadDescriptor(v.Files().DescriptorPath)
	if err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	d.DDB.Delete(RestoreFromKey)
	if err := vmdk.WriteFileAtomic(v.Files().DescriptorPath, d.Marshal()); err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	s.host.Step("promote-restore.after-commit")
	c := v.Layers().(*chain.Chain)
	_, deltas := c.Layers()
	p, err := v.BeginPivot()
	if err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	// The chain is rebuilt over the flat file before the backup reader is
	// let go: should the rebuild fail, the fill device still serves.
	nc, err := chain.Rebase(c, fd.Flat(), deltas[:len(deltas)-1])
	if err != nil { // cannot happen: same shape
		p.End()
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	p.Install(nc, nil)
	p.Commit()
	if _, err := fd.Release(); err != nil {
		s.log.Warn("promote: close the backup reader", "volume", v.Name(), "err", err)
	}
	p.End()
	// Merge the delta(s) above into the flat file, as a crash would at the
	// next start.
	ls := layersOf(v)
	j.SetDetail("merging the writes made since the restore into the flat file")
	if len(ls) == 2 {
		return s.consolidate(ctx, v, chain.NewMerger(nc), ls[0], ls[1], j)
	}
	if n, _ := ls[0].snapshot(); n == "" {
		m, err := chain.NewFrozenMerger(nc, 1)
		if err != nil {
			return err
		}
		return s.mergeFrozen(ctx, v, m, 0, j)
	}
	return nil
}
