package chainops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/sparse"
	"github.com/extrasphere/extrasphere/internal/transfer"
)

// KindPromote is the job kind of Promote.
const KindPromote = "promote"

// Promote makes a linked clone standalone while it runs: the layers it
// shares with its origin are copied into a new flat base in the clone's
// own directory, then its bottom delta is re-pointed to that base (the
// commit point) and the stack pivots. For a volume served from a backup
// it copies the backup into the volume's flat file (promote_restore.go). It runs
// as a job.
func (s *Service) Promote(ctx context.Context, name string) (job.Info, error) {
	vs, unlock, err := s.LockVolumes([]string{name}, "promote")
	if err != nil {
		return job.Info{}, err
	}
	v := vs[0]
	cf := v.Files().Chain
	run := func(ctx context.Context, j *job.Job) error { return s.promote(ctx, v, j) }
	if fd := v.Filling(); fd != nil { // served from a backup (promote_restore.go)
		run = func(ctx context.Context, j *job.Job) error { return s.promoteRestore(ctx, v, fd, j) }
	} else if cf.BaseOwn {
		unlock()
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "volume %s is not a linked clone: nothing to promote", name)
	}
	j, err := s.startHeld(v, KindPromote, v.Files().Size, unlock, nil, run)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

func (s *Service) promote(ctx context.Context, v Vol, j *job.Job) error {
	c := v.Layers().(*chain.Chain)
	base, deltas := c.Layers()
	nShared := len(deltas) - v.Files().Chain.Own
	var shared blockdev.Device = base
	if nShared > 0 {
		sc, err := chain.New(base, deltas[:nShared]) // frozen layers: a read-only view
		if err != nil {
			return err
		}
		shared = sc
	}
	dir := dirOf(v)
	desc := filepath.Join(dir, datastore.DescriptorName(v.Name()))
	flatPath, err := flat.FlatPath(desc)
	if err != nil {
		return err
	}
	// A leftover of an interrupted promote is not on any chain: remove it.
	os.Remove(desc)
	os.Remove(flatPath)
	if err := flat.Create(desc, v.Files().Size, flat.CreateOptions{}); err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	nb, err := flat.Open(desc, flat.Options{})
	if err != nil {
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	fail := func(err error) error {
		nb.Close()
		os.Remove(desc)
		os.Remove(flatPath)
		return fmt.Errorf("promote %s: %w", v.Name(), err)
	}
	j.SetDetail("copying the shared layers into " + filepath.Base(flatPath))
	if err := transfer.CopyDevice(ctx, nb, shared, 0, j.Add); err != nil {
		return fail(err)
	}
	bottom := deltas[nShared].(chain.SparseDelta).Extent
	own := append([]chain.Delta(nil), deltas[nShared:]...)
	nl := layer{path: desc}
	cid, err := nl.cid()
	if err != nil {
		return fail(err)
	}
	p, err := v.BeginPivot()
	if err != nil {
		return fail(err)
	}
	// Built with I/O held: the owner map must see every grain allocated.
	nd, err := chain.New(nb, own)
	if err != nil {
		p.End()
		return fail(err)
	}
	// The commit point: the bottom delta now names the clone's own base.
	if err := bottom.SetParent(sparse.ParentRef{FileNameHint: filepath.Base(desc), CID: cid}); err != nil {
		p.End()
		return fail(err)
	}
	p.Install(nd, func(f *datastore.VolumeFiles) {
		f.DescriptorPath = desc
		f.FlatPath = flatPath
		f.Chain.Base = desc
		f.Chain.Deltas = f.Chain.Deltas[nShared:]
		f.Chain.BaseOwn = true
	})
	p.Commit()
	stall := p.End()
	var errs []error
	for _, d := range deltas[:nShared] {
		errs = append(errs, d.Close())
	}
	errs = append(errs, base.Close())
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("close origin layers after promote", "volume", v.Name(), "err", err)
	}
	s.log.Info("clone promoted", "volume", v.Name(), "io_held", stall)
	return nil
}
