package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/mirror"
)

// Mirrors. A volume has at most one mirror. Its record (target, policy,
// generation, whether the replica was ever in sync, whether this side
// holds acknowledged writes the replica lacks) is in the catalog; what
// the replica lacks is the volume's CBT bitmap "mirror" (the dirty log,
// crash-safe through the activity log). The mirror's filter sits in the
// stack below the tracker (wrapInner).

// MirrorBitmap is the CBT bitmap that records what a mirror's replica may
// lack. A failover enables it too: it then records what the failed-over
// volume wrote, which failback sends.
const MirrorBitmap = "mirror"

// mirrorEntry is a volume's running mirror and its record.
type mirrorEntry struct {
	m   *mirror.Mirror // set once, under mu, before the entry is published (v.mir)
	mu  sync.Mutex     // guards rec, gone and the record's catalog writes, and m until published
	rec catalog.Mirror
	// gone: the record was deleted (mirror rm, failback). Set under mu in
	// the same critical section as the delete, so a callback or a pause
	// that runs later never writes the record back.
	gone bool
}

// CreateMirror starts mirroring a volume. The first copy runs in the
// background (state syncing); ListMirrors shows its progress.
func (s *Service) CreateMirror(ctx context.Context, o apischema.MirrorOptions) (apischema.MirrorInfo, error) {
	if o.Mode == "" {
		o.Mode = apischema.ModeSync
	}
	if o.Mode != apischema.ModeSync {
		return apischema.MirrorInfo{}, errorf(errkind.ErrInvalidArgument, "mirror %s: mode %q: this version mirrors only synchronously (--mode sync)", o.Volume, o.Mode)
	}
	if o.Policy == "" {
		o.Policy = string(mirror.Degrade)
	}
	pol, err := mirror.ParsePolicy(o.Policy)
	if err != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrInvalidArgument, "mirror %s: %w", o.Volume, err)
	}
	spec, err := parseTarget(o.Target, o.Insecure)
	if err != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrInvalidArgument, "mirror %s: %w", o.Volume, err)
	}
	v, size, err := s.mirrorableVolume(o.Volume)
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	if !v.SnapMu().TryLock() {
		return apischema.MirrorInfo{}, errorf(errkind.ErrVolumeInUse, "cannot mirror volume %s: a snapshot removal, promote or migration is running on it; retry when it is done", o.Volume)
	}
	defer v.SnapMu().Unlock()
	if v.State().mir.Load() != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrMirrorExists, "volume %s already has a mirror (see `extrasphere mirror status %s`); remove it first with `extrasphere mirror rm %s`",
			o.Volume, o.Volume, o.Volume)
	}
	rec := catalog.Mirror{Volume: o.Volume, Target: o.Target, Mode: o.Mode, Policy: string(pol), Gen: newGen(),
		Created: now(), Insecure: o.Insecure}
	if err := s.prepareTarget(ctx, spec, &rec, size); err != nil {
		return apischema.MirrorInfo{}, err
	}
	// The dirty log first, all dirty: a crash from here on resumes with a
	// full copy. A create that fails takes out the dirty log it enabled;
	// one that was there (what this side wrote since a failover) stays.
	created := !v.CBT().Has(MirrorBitmap)
	undo := func() {
		if created {
			if err := v.CBT().Remove(MirrorBitmap); err != nil && !errors.Is(err, cbt.ErrBitmapNotFound) {
				s.log.Warn("remove the dirty log of a mirror not created", "volume", o.Volume, "err", err)
			}
		}
	}
	if err := ensureDirtyLog(v.CBT(), true); err != nil {
		undo()
		return apischema.MirrorInfo{}, fmt.Errorf("mirror %s: %w", o.Volume, err)
	}
	if err := s.cat.PutMirror(rec); err != nil {
		undo()
		return apischema.MirrorInfo{}, fmt.Errorf("mirror %s: %w", o.Volume, err)
	}
	if err := s.attachMirror(v, rec); err != nil {
		s.cat.DeleteMirror(o.Volume)
		undo()
		return apischema.MirrorInfo{}, err
	}
	s.log.Info("mirror created", "volume", o.Volume, "target", o.Target, "policy", pol, "gen", rec.Gen)
	return s.mirrorInfo(v), nil
}

// mirrorableVolume returns a served, writable volume that is not a
// replica, and its size.
func (s *Service) mirrorableVolume(name string) (Vol, int64, error) {
	s.host.Lock()
	defer s.host.Unlock()
	v, err := s.host.LookupLocked(name)
	if err != nil {
		return nil, 0, err
	}
	in, r := v.InfoLocked(), v.State().replica
	switch {
	case !in.Served() || v.CBT() == nil:
		return nil, 0, errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, in.Err)
	case in.ReadOnly:
		return nil, 0, errorf(errkind.ErrInvalidArgument, "volume %s is read-only: there is nothing to mirror", name)
	case r != nil && r.FailedOver.IsZero():
		return nil, 0, errorf(errkind.ErrVolumeInUse, "volume %s is a replica of %s/%s: it cannot be mirrored until it is failed over",
			name, r.SourceName, r.SourceVolume)
	case r != nil:
		return nil, 0, errorf(errkind.ErrVolumeInUse, "volume %s was failed over from %s/%s: use `extrasphere failback %s` to mirror it back there",
			name, r.SourceName, r.SourceVolume, name)
	}
	return v, in.Size, nil
}

// ensureDirtyLog enables the mirror bitmap; all marks every block dirty.
func ensureDirtyLog(st *cbt.State, all bool) error {
	if !st.Has(MirrorBitmap) {
		if _, err := st.Enable(MirrorBitmap, now()); err != nil {
			return fmt.Errorf("enable the mirror's dirty log: %w", err)
		}
	}
	if all {
		if err := st.MarkRange(MirrorBitmap, 0, st.Size()); err != nil {
			return fmt.Errorf("mark the mirror's dirty log: %w", err)
		}
	}
	return nil
}

// FailpointMirrorAttach, armed as "mirror.attach=eio", makes attaching a
// mirror fail (fault tests of CreateMirror's rollback).
const FailpointMirrorAttach = "mirror.attach"

// attachMirror starts the mirror of rec on v and inserts its filter. The
// replica lacks what the dirty log holds; before the first full copy,
// everything. The caller holds v.SnapMu().
func (s *Service) attachMirror(v Vol, rec catalog.Mirror) error {
	if err := s.fp.Err(FailpointMirrorAttach); err != nil {
		return fmt.Errorf("mirror %s: %w", v.Name(), err)
	}
	s.host.Lock()
	in := v.InfoLocked()
	s.host.Unlock()
	g := in.Gate
	if g == nil {
		return errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", v.Name(), in.Err)
	}
	dial, err := s.dialer(rec, in.Size)
	if err != nil {
		return err
	}
	j := &dirtyLog{st: v.CBT(), g: g}
	dirty := j.Ranges()
	if !rec.Synced {
		dirty = []blockdev.Range{{Off: 0, Len: in.Size}}
	}
	me := &mirrorEntry{rec: rec}
	m, err := mirror.New(mirror.Options{Volume: v.Name(), Size: in.Size, Policy: mirror.Policy(rec.Policy),
		Dial: dial, DirtyLog: j, Dirty: dirty, Synced: rec.Synced, Logger: s.log,
		OnDegrade: func(cause error) error { return s.recordDiverged(me, cause) },
		OnChange:  func(st mirror.Status) { s.recordSynced(me, st) }})
	if err != nil {
		return fmt.Errorf("mirror %s: %w", v.Name(), err)
	}
	me.mu.Lock() // the mirror's callbacks may already run
	me.m = m
	me.mu.Unlock()
	if rec.Paused {
		m.Pause()
	}
	p, err := v.BeginPivot()
	if err != nil {
		m.Release()
		return errors.Join(err, m.Close(context.Background()))
	}
	v.State().mir.Store(me)
	p.Reinstall()
	p.Commit()
	p.End()
	return nil
}

// detachMirror removes v's mirror filter and stops the mirror. The caller
// holds v.SnapMu(). The mirror is released first: a write the block policy
// holds back is acknowledged (it is on the volume, and no replica is
// required any more), so the I/O hold below does not wait for a replica
// that may never answer.
func (s *Service) detachMirror(ctx context.Context, v Vol) error {
	me := v.State().mir.Load()
	if me == nil {
		return nil
	}
	me.m.Release()
	if p, err := v.BeginPivot(); err == nil {
		v.State().mir.Store(nil)
		p.Reinstall()
		p.Commit()
		p.End()
	} else {
		v.State().mir.Store(nil) // no stack: nothing to take the filter out of
	}
	return me.m.Close(ctx)
}

// recordDiverged persists that this side acknowledges writes the replica
// lacks, before the first such write is acknowledged.
func (s *Service) recordDiverged(me *mirrorEntry, cause error) error {
	me.mu.Lock()
	defer me.mu.Unlock()
	if me.rec.Diverged || me.gone {
		return nil
	}
	r := me.rec
	r.Diverged = true
	if err := s.cat.PutMirror(r); err != nil {
		return err
	}
	me.rec = r
	s.log.Warn("mirror degraded: writes are acknowledged without the replica", "volume", r.Volume, "cause", cause)
	return nil
}

// recordSynced persists the first full sync and the end of a divergence.
func (s *Service) recordSynced(me *mirrorEntry, st mirror.Status) {
	if st.State != mirror.StateInSync {
		return
	}
	me.mu.Lock()
	defer me.mu.Unlock()
	if me.gone {
		return
	}
	if me.m != nil && me.m.Status().State != mirror.StateInSync {
		return // left in-sync meanwhile: keep what the record says
	}
	if me.rec.Synced && !me.rec.Diverged {
		return
	}
	r := me.rec
	r.Synced, r.Diverged = true, false
	if err := s.cat.PutMirror(r); err != nil {
		s.log.Error("record mirror in sync", "volume", r.Volume, "err", err)
		return
	}
	me.rec = r
}

// dirtyLog adapts the volume's mirror bitmap to mirror.DirtyLog.
type dirtyLog struct {
	st *cbt.State
	g  *gate.Gate // the volume's gate, held around a reset; nil only where no I/O can run
}

func (j *dirtyLog) Mark(off, n int64) error { return j.st.MarkRange(MirrorBitmap, off, n) }

// Rotate resets the bitmap while the volume's I/O is held: every write is
// then either finished (and, if the replica lacks it, dirty in the mirror,
// which ok checks) or not yet recorded by the tracker. Without the hold, a
// write between the tracker and the mirror could lose its bit to the reset.
func (j *dirtyLog) Rotate(ok func() bool) ([]blockdev.Range, bool, error) {
	if j.g != nil {
		h := j.g.Hold()
		defer h.Release()
	}
	if !ok() {
		return nil, false, nil
	}
	r, err := j.st.Rotate(MirrorBitmap, now())
	return r.Dirty, err == nil, err
}

func (j *dirtyLog) Ranges() []blockdev.Range {
	r, err := j.st.Ranges(MirrorBitmap)
	if err != nil {
		// No dirty log: nothing says what the replica lacks, so everything.
		return []blockdev.Range{{Off: 0, Len: j.st.Size()}}
	}
	if r == nil {
		// Clean: empty, not nil, as it always was. A failback response
		// carries this set to the peer, whose older versions read
		// "dirty":[], never null.
		r = []blockdev.Range{}
	}
	return r
}

// Start attaches the replica records to their volumes and starts every
// recorded mirror, at the engine's start, before the volumes are served.
func (s *Service) Start() {
	s.loadReplicas()
	s.startMirrors()
}

// startMirrors attaches every recorded mirror.
func (s *Service) startMirrors() {
	recs, err := s.cat.Mirrors()
	if err != nil {
		s.log.Error("load mirrors", "err", err)
		return
	}
	for _, rec := range recs {
		s.host.Lock()
		v, err := s.host.LookupLocked(rec.Volume)
		served := err == nil && v.InfoLocked().Served()
		s.host.Unlock()
		if !served || v.CBT() == nil {
			s.log.Error("mirror not started: its volume is not served", "volume", rec.Volume)
			continue
		}
		if err := ensureDirtyLog(v.CBT(), false); err != nil {
			s.log.Error("mirror not started", "volume", rec.Volume, "err", err)
			continue
		}
		v.SnapMu().Lock()
		err = s.attachMirror(v, rec)
		v.SnapMu().Unlock()
		if err != nil {
			s.log.Error("mirror not started", "volume", rec.Volume, "err", err)
		}
	}
}

// mirrorCloseTimeout bounds the stop of one mirror at daemon stop. The
// mirror bounds its own replica requests (mirror.Options.Timeout, 5 s);
// this is the backstop that keeps SIGTERM within its 10 s even if a
// replica connection does not end.
const mirrorCloseTimeout = 7 * time.Second

// CloseMirror stops v's mirror at a clean stop (after the NBD server
// drained and the volume flushed): an in-sync replica is flushed and the
// dirty log reset.
func CloseMirror(v Vol) error {
	me := v.State().mir.Load()
	if me == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), mirrorCloseTimeout)
	defer cancel()
	return me.m.Close(ctx)
}

// StopMirrorWaits ends every wait for a replica, for a daemon stop: a
// write or flush the block policy holds back fails now (EIO to the
// client; its chunks stay in the dirty log and are resent at the next
// start), and so does every later one that would wait. Writes a healthy
// replica completes are unaffected. serve calls it before draining the
// NBD connections, which could otherwise wait for ever on such a write.
func (s *Service) StopMirrorWaits() {
	s.host.Lock()
	vols := s.host.VolumesLocked()
	s.host.Unlock()
	for _, v := range vols {
		if m := v.State().Mirror(); m != nil {
			m.StopWaits()
		}
	}
}

// ListMirrors describes the mirrors of this node's volumes and the
// replicas it holds for others; vol "" means all.
func (s *Service) ListMirrors(ctx context.Context, vol string) ([]apischema.MirrorInfo, error) {
	s.host.Lock()
	var vols []Vol
	var err error
	if vol == "" {
		vols = s.host.VolumesLocked()
	} else {
		var v Vol
		if v, err = s.host.LookupLocked(vol); err == nil {
			vols = []Vol{v}
		}
	}
	s.host.Unlock()
	if err != nil {
		return nil, err
	}
	var out []apischema.MirrorInfo
	for _, v := range vols {
		if v.State().mir.Load() != nil {
			out = append(out, s.mirrorInfo(v))
		}
		if in, ok := s.replicaInfo(v); ok {
			out = append(out, in)
		}
	}
	if vol != "" && len(out) == 0 {
		return nil, errorf(errkind.ErrMirrorNotFound, "volume %s has no mirror and is no replica (create one with `extrasphere mirror create %s --to TARGET`)", vol, vol)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out, nil
}

func (s *Service) mirrorInfo(v Vol) apischema.MirrorInfo {
	me := v.State().mir.Load()
	if me == nil {
		return apischema.MirrorInfo{Volume: v.Name()}
	}
	st := me.m.Status()
	me.mu.Lock()
	rec := me.rec
	me.mu.Unlock()
	in := apischema.MirrorInfo{Volume: v.Name(), Role: apischema.RoleSource, Target: rec.Target, Mode: rec.Mode, MirrorStatus: mirrorStatus(st),
		Gen: rec.Gen, Synced: rec.Synced, Diverged: rec.Diverged}
	if st.State != mirror.StateInSync && rec.Synced {
		in.LagSeconds = time.Since(st.Since).Seconds()
	}
	return in
}

// mirrorOf returns v's mirror or errkind.ErrMirrorNotFound.
func (s *Service) mirrorOf(name string) (Vol, *mirrorEntry, error) {
	s.host.Lock()
	v, err := s.host.LookupLocked(name)
	s.host.Unlock()
	if err != nil {
		return nil, nil, err
	}
	me := v.State().mir.Load()
	if me == nil {
		return nil, nil, errorf(errkind.ErrMirrorNotFound, "volume %s has no mirror (see `extrasphere mirror status`)", name)
	}
	return v, me, nil
}

// PauseMirror stops sending to the replica; writes are tracked.
func (s *Service) PauseMirror(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	return s.setPaused(name, true)
}

// ResumeMirror reconnects a paused or refused mirror and resyncs.
func (s *Service) ResumeMirror(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	return s.setPaused(name, false)
}

func (s *Service) setPaused(name string, paused bool) (apischema.MirrorInfo, error) {
	v, me, err := s.mirrorOf(name)
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	me.mu.Lock()
	r := me.rec
	r.Paused = paused
	if me.gone {
		err = errorf(errkind.ErrMirrorNotFound, "volume %s has no mirror any more (it was removed or failed back)", name)
	} else if err = s.cat.PutMirror(r); err == nil {
		me.rec = r
	}
	me.mu.Unlock()
	if err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("mirror %s: %w", name, err)
	}
	if paused {
		me.m.Pause()
	} else {
		me.m.Resume()
	}
	return s.mirrorInfo(v), nil
}

// RemoveMirror stops and forgets a volume's mirror. The replica keeps
// what it has; on another node it stays a replica volume there (fail it
// over or remove it on that node).
func (s *Service) RemoveMirror(ctx context.Context, name string) error {
	v, _, err := s.mirrorOf(name)
	if err != nil {
		return err
	}
	if !v.SnapMu().TryLock() {
		return errorf(errkind.ErrVolumeInUse, "cannot remove the mirror of volume %s: a snapshot removal, promote or migration is running on it; retry when it is done", name)
	}
	defer v.SnapMu().Unlock()
	me := v.State().mir.Load() // again under snapMu: a concurrent rm or failback may have won
	if me == nil {
		return errorf(errkind.ErrMirrorNotFound, "volume %s has no mirror (see `extrasphere mirror status`)", name)
	}
	cerr := s.detachMirror(ctx, v)
	me.mu.Lock()
	err = s.cat.DeleteMirror(name)
	if err == nil || errors.Is(err, catalog.ErrNotFound) {
		me.gone, err = true, nil
	}
	me.mu.Unlock()
	if err != nil {
		return fmt.Errorf("remove mirror of %s: %w", name, err)
	}
	if err := v.CBT().Remove(MirrorBitmap); err != nil && !errors.Is(err, cbt.ErrBitmapNotFound) {
		s.log.Warn("remove mirror dirty log", "volume", name, "err", err)
	}
	if cerr != nil {
		s.log.Warn("stop mirror", "volume", name, "err", cerr)
	}
	s.log.Info("mirror removed", "volume", name)
	return nil
}

// newGen is a fresh generation id.
func newGen() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// mirrorStatus converts a mirror's status for the API.
func mirrorStatus(s mirror.Status) apischema.MirrorStatus {
	return apischema.MirrorStatus{State: string(s.State), Policy: string(s.Policy), Connected: s.Connected,
		BytesToSync: s.BytesToSync, BytesSent: s.BytesSent, BytesCopied: s.BytesCopied, Since: s.Since,
		LastError: s.LastError, LastErrorAt: s.LastErrorAt}
}
