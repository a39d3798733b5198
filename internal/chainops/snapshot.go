package chainops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// LockVolumes looks up and locks (SnapMu) the volumes of a snapshot
// operation in name order (so two group operations never deadlock);
// unlock undoes it. A busy volume is refused, not waited for.
func (s *Service) LockVolumes(names []string, what string) (vs []Vol, unlock func(), err error) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	s.host.Lock()
	for _, n := range names {
		v, err := s.host.LookupLocked(n)
		var in VolInfo
		if err == nil {
			in = v.InfoLocked()
		}
		if err == nil && (in.Err != nil || !in.Served) {
			err = errorf(errkind.ErrVolumeUnavailable, "cannot %s volume %s: it is unavailable (%v)", what, n, in.Err)
		}
		if err == nil && in.Op != "" {
			err = errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: %s is in progress; retry when it is done", what, n, in.Op)
		}
		if err == nil && in.ReadOnly {
			err = errorf(errkind.ErrInvalidArgument, "cannot %s volume %s: it is read-only", what, n)
		}
		if err != nil {
			s.host.Unlock()
			return nil, nil, err
		}
		vs = append(vs, v)
	}
	s.host.Unlock()
	for i, v := range vs {
		// A merge, promote or migration holds snapMu for its whole job:
		// say so rather than make the caller wait minutes.
		if !v.SnapMu().TryLock() {
			for _, l := range vs[:i] {
				l.SnapMu().Unlock()
			}
			return nil, nil, errorf(errkind.ErrVolumeInUse, "cannot %s volume %s: a snapshot removal, promote or migration is running on it (see `extrasphere job list`); retry when it is done",
				what, v.Name())
		}
	}
	return vs, func() {
		for _, v := range vs {
			v.SnapMu().Unlock()
		}
	}, nil
}

// CreateSnapshot takes one crash-consistent snapshot of every volume at
// the same instant: all their gates are held (no write in flight on any of
// them) while each volume's current top layer is frozen and a new delta
// takes its writes. A write acknowledged on any volume before the instant
// is in the snapshot; one issued after it is not.
func (s *Service) CreateSnapshot(ctx context.Context, vols []string, name string) ([]apischema.SnapshotInfo, error) {
	if name == "" {
		name = "snap-" + time.Now().UTC().Format("20060102-150405")
	}
	if err := datastore.CheckName("snapshot", name); err != nil {
		return nil, errorf(errkind.ErrInvalidArgument, "%v", err)
	}
	vs, unlock, err := s.LockVolumes(vols, "snapshot")
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.SnapshotGroup(ctx, vs, name, nil)
}

// SnapshotGroup snapshots vs (their snapMu held) at one instant; during,
// if set, runs for each volume while every volume's I/O is held, after
// its snapshot (a backup rotates its CBT bitmap there).
func (s *Service) SnapshotGroup(ctx context.Context, vs []Vol, name string, during func(v Vol) error) ([]apischema.SnapshotInfo, error) {
	vols := make([]string, len(vs))
	for i, v := range vs {
		vols[i] = v.Name()
	}
	for _, v := range vs {
		for _, l := range layersOf(v) {
			if n, _ := l.snapshot(); n == name && l.own {
				return nil, errorf(errkind.ErrSnapshotExists, "volume %s already has a snapshot %s; pick another name", v.Name(), name)
			}
		}
	}
	// Flush first with I/O running, so the flush under the hold (which
	// makes the frozen layers durable) has almost nothing left to sync.
	for _, v := range vs {
		if err := v.Gate().Flush(ctx); err != nil {
			return nil, fmt.Errorf("snapshot %s: flush volume %s: %w", name, v.Name(), err)
		}
	}
	pivots := make([]Pivot, 0, len(vs))
	for _, v := range vs {
		p, err := v.BeginPivot()
		if err != nil {
			for _, p := range pivots {
				p.End()
			}
			return nil, fmt.Errorf("snapshot %s: %w", name, err)
		}
		pivots = append(pivots, p)
	}
	at := time.Now()
	var out []apischema.SnapshotInfo
	var errs []error
	for i, v := range vs {
		info, err := s.snapshotHeld(ctx, v, pivots[i], name, at)
		if err == nil && during != nil {
			err = during(v)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, info)
	}
	var stall time.Duration
	for _, p := range pivots {
		stall = max(stall, p.End())
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("snapshot %s: %w (volumes snapshotted: %d of %d)", name, err, len(out), len(vs))
	}
	s.log.Info("snapshot created", "snapshot", name, "volumes", vols, "io_held", stall)
	return out, nil
}

// snapshotOne takes a snapshot of one volume (clone, migrate); v.snapMu
// is held and the caller has flushed, so the flush under the hold is
// short.
func (s *Service) snapshotOne(ctx context.Context, v Vol, name string, at time.Time) (apischema.SnapshotInfo, error) {
	p, err := v.BeginPivot()
	if err != nil {
		return apischema.SnapshotInfo{}, err
	}
	defer p.End()
	return s.snapshotHeld(ctx, v, p, name, at)
}

// snapshotHeld freezes v's top layer under name and installs a chain with
// a new empty delta on top, in the pivot p (I/O held); v.snapMu is held.
// On failure the pivot's end undoes each step: the delta goes, the layer
// is no longer named.
func (s *Service) snapshotHeld(ctx context.Context, v Vol, p Pivot, name string, at time.Time) (apischema.SnapshotInfo, error) {
	if err := p.Current().Flush(ctx); err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("volume %s: flush before snapshot: %w", v.Name(), err)
	}
	ls := layersOf(v)
	top := ls[len(ls)-1]
	if err := top.setSnapshot(name, at); err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("volume %s: name the frozen layer %s: %w", v.Name(), top.path, err)
	}
	p.OnAbort(func() { top.setSnapshot("", time.Time{}) }) // best effort: the layer stays the writable top
	ext, path, err := newDelta(v, dirOf(v), top, v.Files().Size)
	if err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("volume %s: create delta: %w", v.Name(), err)
	}
	p.OnAbort(func() {
		ext.Close()
		os.Remove(path)
	})
	var next blockdev.Device
	if c, ok := p.Layers().(*chain.Chain); ok {
		next, err = chain.Extend(c, chain.SparseDelta{Extent: ext})
	} else {
		next, err = chain.New(p.Layers(), []chain.Delta{chain.SparseDelta{Extent: ext}})
	}
	if err != nil {
		return apischema.SnapshotInfo{}, fmt.Errorf("volume %s: %w", v.Name(), err)
	}
	p.Install(next, func(f *datastore.VolumeFiles) {
		f.Chain.Deltas = append(f.Chain.Deltas, path)
		f.Chain.Own++
		f.Chain.NextDelta = max(f.Chain.NextDelta, 1) + 1
	})
	p.Commit()
	return apischema.SnapshotInfo{Volume: v.Name(), Name: name, Created: at, Layer: top.path}, nil
}

// ListSnapshots lists a volume's own snapshots, oldest first.
func (s *Service) ListSnapshots(ctx context.Context, vol string) ([]apischema.SnapshotInfo, error) {
	s.host.Lock()
	v, err := s.host.LookupLocked(vol)
	s.host.Unlock()
	if err != nil {
		return nil, err
	}
	s.host.Lock() // pivots replace the layers and the files under the Host's lock
	ls := layersOf(v)
	s.host.Unlock()
	out := []apischema.SnapshotInfo{}
	for _, l := range ls {
		n, t := l.snapshot()
		if n == "" || !l.own {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Name == n {
			// A snapshot removal is moving this name down (snaprm_frozen.go).
			out = out[:len(out)-1]
		}
		out = append(out, apischema.SnapshotInfo{Volume: vol, Name: n, Created: t, Layer: l.path})
	}
	return out, nil
}

// findSnapshot returns the index of the own layer the snapshot froze.
func findSnapshot(v Vol, ls []layer, name string) (int, error) {
	for i, l := range ls {
		if n, _ := l.snapshot(); n == name && l.own {
			return i, nil
		}
	}
	return 0, errorf(errkind.ErrSnapshotNotFound, "volume %s has no snapshot %s (see `extrasphere snapshot list %s`)", v.Name(), name, v.Name())
}
