package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fence"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Replicas: the target side of a mirror from another node. A replica is a
// normal volume with a replica record (catalog): it is exported read-only
// under its name, and writable only as the stream export VOL@GEN@EPOCH,
// to the paired node that owns the mirror, over TLS, one session (epoch)
// at a time (OpenStream). Failover ends the record's
// replica role: the volume becomes writable here, and its "mirror" CBT
// bitmap starts recording what it writes, for failback.

type replicaRequest = apischema.ReplicaRequest
type replicaResponse = apischema.ReplicaResponse

// loadReplicas attaches the replica records to their volumes at start.
func (s *Service) loadReplicas() {
	recs, err := s.cat.Replicas()
	if err != nil {
		s.log.Error("load replicas", "err", err)
		return
	}
	s.host.Lock()
	defer s.host.Unlock()
	for _, r := range recs {
		if v, err := s.host.LookupLocked(r.Volume); err == nil {
			r := r
			v.State().replica = &r
		}
	}
}

// nbdPort is the port of our NBD TCP listener, for peers.
func (s *Service) nbdPort() (string, error) {
	if s.nbd == "" {
		return "", errorf(errkind.ErrNoTCP, "this node serves NBD only on its unix socket: start it with --nbd 0.0.0.0:10809 to hold replicas")
	}
	_, port, err := net.SplitHostPort(s.nbd)
	if err != nil {
		return "", errorf(errkind.ErrNoTCP, "NBD address %q: %v", s.nbd, err)
	}
	return port, nil
}

// CreateReplica makes (or re-arms) the replica volume a paired node asks
// for.
func (s *Service) CreateReplica(ctx context.Context, p node.Peer, req apischema.ReplicaRequest) (apischema.ReplicaResponse, error) {
	port, err := s.nbdPort()
	if err != nil {
		return apischema.ReplicaResponse{}, err
	}
	if req.Gen == "" || strings.ContainsAny(req.Gen, "@/") {
		return apischema.ReplicaResponse{}, errorf(errkind.ErrInvalidArgument, "replica %s: bad generation %q", req.Volume, req.Gen)
	}
	s.host.Lock()
	v, err := s.host.LookupLocked(req.Volume)
	exists := err == nil
	var old *catalog.Replica
	var size int64
	if exists {
		old, size = v.State().replica, v.InfoLocked().Size
	}
	s.host.Unlock()
	rec := catalog.Replica{Volume: req.Volume, SourceNode: p.Fingerprint, SourceName: p.Name, SourceAddr: p.Addr,
		SourceVolume: req.SourceVolume, Gen: req.Gen, Created: now()}
	switch {
	case exists && old == nil:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeExists, "volume %s exists on node %s and is not a replica of %s: choose another target name, or remove it there",
			req.Volume, s.nodeName(), p.Name)
	case exists && !old.FailedOver.IsZero():
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s was failed over at %s and takes writes there: it cannot become a replica again (use failback on %s)",
			req.Volume, s.nodeName(), old.FailedOver.Format(time.RFC3339), s.nodeName())
	case exists && old.SourceNode != p.Fingerprint:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s is a replica of node %s, not of %s", req.Volume, s.nodeName(), old.SourceName, p.Name)
	case exists && size < req.Size:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrInvalidArgument, "replica %s is %d bytes, the source volume %d", req.Volume, size, req.Size)
	case !exists:
		if err := s.host.CreateVolume(ctx, req.Volume, req.Size); err != nil {
			return apischema.ReplicaResponse{}, err
		}
	}
	if err := s.cat.PutReplica(rec); err != nil {
		return apischema.ReplicaResponse{}, fmt.Errorf("replica %s: %w", req.Volume, err)
	}
	s.host.Lock()
	var rf *replicaFence
	if v, err := s.host.LookupLocked(req.Volume); err == nil {
		v.State().replica = &rec
		rf = v.State().replicaFenceLocked(rec.Gen)
	}
	s.host.Unlock()
	if rf != nil && rf.prev != nil {
		// Streams of an older generation write no more from here.
		if err := rf.prev.Seal(ctx); err != nil {
			return apischema.ReplicaResponse{}, fmt.Errorf("replica %s: end the streams of the previous mirror generation: %w", req.Volume, err)
		}
	}
	s.log.Info("replica ready", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume, "gen", req.Gen)
	return apischema.ReplicaResponse{NBDPort: port}, nil
}

func (s *Service) nodeName() string {
	if ns := s.node; ns != nil {
		if id, err := ns.Identity(); err == nil {
			return id.Name
		}
	}
	return "(this node)"
}

// OpenStream is OpenExport for a stream name VOL@GEN@EPOCH
// (StreamExport): the mirror of a paired node writing into its replica.
// Refusals that retrying cannot fix (refuseStream) are
// NBD_REP_ERR_POLICY; the source stops its mirror on them. Every other
// refusal is NBD_REP_ERR_UNKNOWN, and the source retries.
//
// The stream is fenced (internal/fence): a stream of a newer epoch ends
// every older stream of the volume and waits until their connections and
// requests are gone before this returns, i.e. before the NBD server
// acknowledges NBD_OPT_GO; only then does the source resync. Every write,
// zero, trim and flush of the stream is admitted by the fence, so none of
// an older stream is applied once a newer one opened. An older epoch is
// refused (fence.ErrStale; retryable: the source dials again with a new
// epoch).
func (s *Service) OpenStream(ctx context.Context, name string) (*nbd.Export, func(), error) {
	vol, gen, epoch, perr := parseReplicaExport(name)
	refuse := func(format string, a ...any) (*nbd.Export, func(), error) {
		return nil, nil, refuseStream(format, a...)
	}
	cs, ok := nbd.PeerTLS(ctx)
	ns := s.node
	if !ok || ns == nil {
		return nil, nil, fmt.Errorf("export %q: replica streams need TLS with a paired node's certificate: %w", name, nbd.ErrUnknownExport)
	}
	p, ok := ns.PeerFromTLS(cs)
	if !ok {
		return nil, nil, fmt.Errorf("export %q: the client is not a paired node: %w", name, nbd.ErrUnknownExport)
	}
	if perr != nil {
		return refuse("stream %q from node %s: %v. If that node runs an older Extrasphere, upgrade it: streams without an epoch cannot be fenced", name, p.Name, perr)
	}
	s.host.Lock()
	v, err := s.checkReplicaStreamLocked(name, vol, gen, p)
	var rf *replicaFence
	if err == nil {
		rf = v.State().replicaFenceLocked(gen)
	}
	s.host.Unlock()
	if err != nil {
		return nil, nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, replicaFenceTimeout)
	h, err := rf.open(fctx, epoch)
	cancel()
	if err != nil {
		s.log.Warn("replica stream refused", "volume", vol, "epoch", epoch, "err", err)
		return nil, nil, fmt.Errorf("export %q: volume %s on node %s: %w (the mirror retries with a new stream): %w", name, vol, s.nodeName(), err, nbd.ErrUnknownExport)
	}
	s.host.Lock()
	defer s.host.Unlock()
	// The fence may have waited: look again.
	if v2, err := s.checkReplicaStreamLocked(name, vol, gen, p); err != nil || v2.State() != v.State() {
		h.Close()
		if err == nil {
			err = fmt.Errorf("export %q: volume %s was replaced: %w", name, vol, nbd.ErrUnknownExport)
		}
		return nil, nil, err
	}
	v.AddConnsLocked(1)
	v.State().streams++
	vgone, dev := v.GoneLocked(), v.InfoLocked().Gate
	gone, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() {
		once.Do(func() {
			h.Close()
			close(released)
			s.host.Lock()
			v.AddConnsLocked(-1)
			v.State().streams--
			s.host.Unlock()
		})
	}
	// The server drops the connection when the volume goes (failover,
	// forced removal) or a newer stream fences this one.
	go func(vgone <-chan struct{}) {
		select {
		case <-vgone:
		case <-h.Ended():
		case <-released:
			return
		}
		close(gone)
	}(vgone)
	s.log.Info("replica stream open", "volume", vol, "source", p.Name, "epoch", epoch)
	return &nbd.Export{Gone: gone, Name: name, Description: fmt.Sprintf("replica %s of %s/%s", vol, p.Name, v.State().replica.SourceVolume),
		Device: fence.NewDevice(dev, h, false)}, release, nil
}

// refuseStream is the refusal of a replica stream that retrying cannot fix
// (a failed-over or removed replica, another generation, a stream without
// an epoch). It wraps nbd.ErrNotPermitted, so the NBD server answers
// NBD_REP_ERR_POLICY and the source's dialer stops the mirror (state
// refused) on that reply code; the text, which the source shows as the
// mirror's last error, starts "replica refused:".
func refuseStream(format string, a ...any) error {
	return fmt.Errorf("replica refused: %s: %w", fmt.Sprintf(format, a...), nbd.ErrNotPermitted)
}

// checkReplicaStreamLocked finds the replica volume a stream of peer p
// for generation gen may write into.
func (s *Service) checkReplicaStreamLocked(name, vol, gen string, p node.Peer) (Vol, error) {
	refuse := func(format string, a ...any) (Vol, error) {
		return nil, refuseStream(format, a...)
	}
	if s.host.ClosedLocked() {
		return nil, fmt.Errorf("export %q: %w: %w", name, errkind.ErrClosed, nbd.ErrUnknownExport)
	}
	v, err := s.host.LookupLocked(vol)
	if err != nil {
		return refuse("volume %s does not exist on node %s (was it removed?)", vol, s.nodeName())
	}
	in, r := v.InfoLocked(), v.State().replica
	switch {
	case r == nil:
		return refuse("volume %s on node %s is not a replica", vol, s.nodeName())
	case r.SourceNode != p.Fingerprint:
		return refuse("volume %s on node %s is a replica of node %s, not of %s", vol, s.nodeName(), r.SourceName, p.Name)
	case !r.FailedOver.IsZero():
		return refuse("volume %s was failed over on node %s at %s; it no longer takes writes from %s. Stop the VM on %s; then run `extrasphere failback %s` on %s",
			vol, s.nodeName(), r.FailedOver.Format(time.RFC3339), p.Name, p.Name, vol, s.nodeName())
	case r.Gen != gen:
		return refuse("volume %s on node %s belongs to mirror generation %s, not %s (the mirror was recreated)", vol, s.nodeName(), r.Gen, gen)
	case !in.Served():
		return nil, fmt.Errorf("export %q: volume unavailable (%v): %w", name, in.Err, nbd.ErrUnknownExport)
	case in.Op != "":
		return nil, fmt.Errorf("export %q: volume busy (%s in progress): %w", name, in.Op, nbd.ErrUnknownExport)
	}
	return v, nil
}

// replicaFenceTimeout bounds how long a new stream waits for the older
// streams of its volume to end (their requests to complete and their
// connections to close). It is below the source's dial timeout (twice the
// mirror's 5 s request timeout), so the source hears why before it gives
// up, and far above what the requests one connection may hold (the NBD
// server's in-flight budget) take on a working disk. On expiry the new
// stream is refused, retryably; the older ones stay fenced.
const replicaFenceTimeout = 5 * time.Second

// replicaFence is a replica volume's fence for one mirror generation.
// prev is the previous generation's: sealed before any stream of this one
// opens, so that no stream of an older generation writes either.
type replicaFence struct {
	gen  string
	f    *fence.Fence
	prev *fence.Fence
}

// replicaFenceLocked is the volume's fence for generation gen (the Host's lock held); a new
// generation gets a new one.
func (st *State) replicaFenceLocked(gen string) *replicaFence {
	if st.rfence == nil || st.rfence.gen != gen {
		rf := &replicaFence{gen: gen, f: fence.New(replicaFenceTimeout)}
		if st.rfence != nil {
			rf.prev = st.rfence.f
		}
		st.rfence = rf
	}
	return st.rfence
}

// open admits a stream of epoch: the previous generation is sealed, then
// the current one fenced.
func (rf *replicaFence) open(ctx context.Context, epoch uint64) (*fence.Handle, error) {
	if rf.prev != nil {
		if err := rf.prev.Seal(ctx); err != nil {
			return nil, fmt.Errorf("end the streams of the previous mirror generation: %w", err)
		}
	}
	return rf.f.Open(ctx, epoch)
}

// replicaInfo describes v's replica role, if any.
func (s *Service) replicaInfo(v Vol) (apischema.MirrorInfo, bool) {
	s.host.Lock()
	defer s.host.Unlock()
	r := v.State().replica
	if r == nil {
		return apischema.MirrorInfo{}, false
	}
	in := apischema.MirrorInfo{Volume: v.Name(), Role: apischema.RoleReplica, Mode: apischema.ModeSync, Gen: r.Gen,
		Source: r.SourceName + "/" + r.SourceVolume, Streams: v.State().streams, FailedOver: r.FailedOver}
	in.State = apischema.ReplicaReceiving
	if v.State().streams == 0 {
		in.State = apischema.ReplicaIdle
	}
	if !r.FailedOver.IsZero() {
		in.Role, in.State = apischema.RoleFailedOver, apischema.ReplicaWritable
	}
	return in, true
}

// Failover makes a replica the writable volume here: the other node's
// stream is cut and refused from now on, and the volume's mirror bitmap
// records what it writes, for failback. force is needed while the source
// is still connected (its VM may still write there: split brain).
func (s *Service) Failover(ctx context.Context, name string, force bool) (apischema.MirrorInfo, error) {
	s.host.Lock()
	v, err := s.host.LookupLocked(name)
	if err == nil {
		switch {
		case v.State().replica == nil:
			err = errorf(errkind.ErrNotReplica, "volume %s is not a replica on this node: failover runs on the node that holds the replica", name)
		case !v.State().replica.FailedOver.IsZero():
			err = errorf(errkind.ErrNotReplica, "volume %s was already failed over at %s", name, v.State().replica.FailedOver.Format(time.RFC3339))
		case v.State().streams > 0 && !force:
			err = errorf(errkind.ErrVolumeInUse, "volume %s still receives writes from node %s (%d connection(s)): stop the VM there first (or `extrasphere mirror pause %s` there); pass --force only if that node is gone",
				name, v.State().replica.SourceName, v.State().streams, v.State().replica.SourceVolume)
		case v.InfoLocked().Gate == nil || v.CBT() == nil:
			err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.InfoLocked().Err)
		}
	}
	var rf *replicaFence
	var srcName string
	if err == nil {
		rf, srcName = v.State().replicaFenceLocked(v.State().replica.Gen), v.State().replica.SourceName
	}
	s.host.Unlock()
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	// No write of the source's streams lands from now on: the ones in
	// flight complete first, later ones are refused.
	if err := rf.f.Seal(ctx); err != nil {
		rf.f.Unseal()
		return apischema.MirrorInfo{}, errorf(errkind.ErrVolumeInUse, "failover %s: the stream of node %s still has writes in flight (%v): retry", name, srcName, err)
	}
	done := false
	defer func() {
		if !done {
			rf.f.Unseal()
		}
	}()
	v.SnapMu().Lock()
	defer v.SnapMu().Unlock()
	p, err := v.BeginPivot()
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	defer p.End()
	// From this instant, the bitmap records every write made here.
	if v.CBT().Has(MirrorBitmap) {
		_, err = v.CBT().Clear(MirrorBitmap)
	} else {
		_, err = v.CBT().Enable(MirrorBitmap, now())
	}
	if err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failover %s: %w", name, err)
	}
	s.host.Lock()
	r := *v.State().replica
	s.host.Unlock()
	r.FailedOver, r.NewGen = now(), newGen()
	if err := s.cat.PutReplica(r); err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failover %s: %w", name, err)
	}
	s.host.Lock()
	v.State().replica = &r
	v.CutLocked() // the source's stream and read-only readers are cut
	s.host.Unlock()
	p.Reinstall()
	p.Commit()
	done = true
	s.log.Warn("failover: replica is now writable here", "volume", name, "source", r.SourceName+"/"+r.SourceVolume)
	in, _ := s.replicaInfo(v)
	return in, nil
}

// Failback mirrors a failed-over volume back to the node it came from,
// sending only what differs: what was written here since failover and
// what the old source wrote that never reached here. The old source's
// volume must be idle. If both sides wrote, it refuses (split brain).
func (s *Service) Failback(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	s.host.Lock()
	v, err := s.host.LookupLocked(name)
	var r catalog.Replica
	var size int64
	if err == nil {
		switch {
		case v.State().replica == nil || v.State().replica.FailedOver.IsZero():
			err = errorf(errkind.ErrNotReplica, "volume %s was not failed over on this node: failback runs where failover ran", name)
		case v.CBT() == nil || v.InfoLocked().Gate == nil:
			err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.InfoLocked().Err)
		default:
			r, size = *v.State().replica, v.InfoLocked().Size
		}
	}
	s.host.Unlock()
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	var p node.Peer
	if ns := s.node; ns != nil {
		p, _ = ns.Peers().Get(r.SourceNode)
	}
	if p.Fingerprint == "" || p.Addr == "" {
		return apischema.MirrorInfo{}, errorf(errkind.ErrPeer, "failback %s: node %s (%s) is not paired or its address is unknown: pair again with `extrasphere node pair HOST:PORT --code CODE`", name, r.SourceName, r.SourceNode)
	}
	if !v.SnapMu().TryLock() {
		return apischema.MirrorInfo{}, errorf(errkind.ErrVolumeInUse, "cannot fail back volume %s: a snapshot removal, promote or migration is running on it; retry when it is done", name)
	}
	defer v.SnapMu().Unlock()
	if v.State().mir.Load() != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrMirrorExists, "volume %s already has a mirror", name)
	}
	wrote, err := v.CBT().Ranges(MirrorBitmap)
	if err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failback %s: %w", name, err)
	}
	req := apischema.FailbackRequest{Volume: r.SourceVolume, OldGen: r.Gen, NewGen: r.NewGen, SourceVolume: name, Size: size, TargetWrote: len(wrote) > 0}
	var resp apischema.FailbackResponse
	if err := s.node.PeerClient(p.Addr, p.Fingerprint).Do(ctx, "POST", apischema.PeerFailback, req, &resp); err != nil {
		return apischema.MirrorInfo{}, peerError(name, p, err)
	}
	// What the old source lacks joins the dirty log, durably, before the
	// record says we are the source.
	for _, d := range resp.Dirty {
		if err := v.CBT().MarkRange(MirrorBitmap, d.Off, d.Len); err != nil {
			return apischema.MirrorInfo{}, fmt.Errorf("failback %s: %w", name, err)
		}
	}
	host, _, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrPeer, "failback %s: node %s address %q: %v", name, p.Name, p.Addr, err)
	}
	rec := catalog.Mirror{Volume: name, Target: "extrasphere://" + p.Addr + "/" + r.SourceVolume, Mode: apischema.ModeSync,
		Policy: string(mirror.Degrade), Gen: r.NewGen, Created: now(), PeerFingerprint: p.Fingerprint, PeerAddr: p.Addr,
		PeerVolume: r.SourceVolume, PeerNBDAddr: net.JoinHostPort(host, resp.NBDPort), Synced: true, Diverged: true}
	// One transaction: a crash leaves either the replica or the mirror
	// record, never both.
	if err := s.cat.BecomeSource(rec); err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failback %s: %w", name, err)
	}
	s.host.Lock()
	v.State().replica = nil
	s.host.Unlock()
	if err := s.attachMirror(v, rec); err != nil {
		return apischema.MirrorInfo{}, err
	}
	s.log.Info("failback: mirroring back", "volume", name, "to", p.Name+"/"+r.SourceVolume, "dirty_ranges", len(resp.Dirty)+len(wrote))
	return s.mirrorInfo(v), nil
}

// AcceptFailback is the old source's side of failback (peer API): its
// volume becomes the replica of the failed-over one, and it answers what
// it holds that the other side may lack.
//
// Concurrent callers (a retried request, a pause from the CLI) are
// serialised by the volume's snapMu, taken before anything is checked:
// every check and the change it allows happen under it, and the volume is
// marked busy (v.op) so that no NBD client opens it meanwhile.
func (s *Service) AcceptFailback(ctx context.Context, p node.Peer, req apischema.FailbackRequest) (apischema.FailbackResponse, error) {
	port, err := s.nbdPort()
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	s.host.Lock()
	v, err := s.host.LookupLocked(req.Volume)
	s.host.Unlock()
	if errors.Is(err, errkind.ErrVolumeNotFound) {
		// The old source's volume was removed (the manual resolution of
		// a split brain): it comes back as a replica with a full copy.
		return s.failbackIntoNew(ctx, p, req, port)
	}
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	if !v.SnapMu().TryLock() {
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s is busy (snapshot removal, promote, migration or another failback); retry", req.Volume, s.nodeName())
	}
	defer v.SnapMu().Unlock()
	s.host.Lock()
	var already bool
	in := v.InfoLocked()
	size := in.Size
	switch {
	case in.Op != "":
		err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s is busy (%s in progress); retry", req.Volume, s.nodeName(), in.Op)
	case in.Conns > 0:
		err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s has %d open NBD connection(s): stop the VM there before failback", req.Volume, s.nodeName(), in.Conns)
	case v.State().replica != nil:
		already = v.State().replica.SourceNode == p.Fingerprint && v.State().replica.Gen == req.NewGen
		if !already {
			err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s is a replica of %s, not the old source of this failback", req.Volume, s.nodeName(), v.State().replica.SourceName)
		}
	default:
		v.SetOpLocked("failback") // no NBD client opens it until the roles are swapped
		defer func() {
			s.host.Lock()
			v.SetOpLocked("")
			s.host.Unlock()
		}()
	}
	s.host.Unlock()
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	if already { // a retried failback: resend everything, it is safe
		return apischema.FailbackResponse{Dirty: []blockdev.Range{{Off: 0, Len: size}}, NBDPort: port}, nil
	}
	me := v.State().mir.Load()
	if me == nil {
		return apischema.FailbackResponse{}, errorf(errkind.ErrMirrorNotFound, "volume %s on node %s has no mirror to %s: nothing to fail back into; remove it there to get a full copy", req.Volume, s.nodeName(), p.Name)
	}
	me.mu.Lock()
	rec := me.rec
	me.mu.Unlock()
	switch {
	case rec.PeerFingerprint != p.Fingerprint || rec.PeerVolume != req.SourceVolume:
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s mirrors to %s, not to %s/%s", req.Volume, s.nodeName(), rec.Target, p.Name, req.SourceVolume)
	case rec.Gen != req.OldGen:
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s mirrors in generation %s, the failover was of %s", req.Volume, s.nodeName(), rec.Gen, req.OldGen)
	case rec.Diverged && req.TargetWrote:
		return apischema.FailbackResponse{}, errorf(errkind.ErrSplitBrain,
			"split brain: volume %s on node %s acknowledged writes that never reached %s, and %s/%s was written after failover. Neither side is overwritten. Keep one: see README, \"Split brain\"",
			req.Volume, s.nodeName(), p.Name, p.Name, req.SourceVolume)
	}
	dirty := (&dirtyLog{st: v.CBT()}).Ranges()
	if !rec.Synced {
		dirty = []blockdev.Range{{Off: 0, Len: size}}
	}
	if err := s.detachMirror(ctx, v); err != nil {
		s.log.Warn("stop mirror for failback", "volume", req.Volume, "err", err)
	}
	rr := catalog.Replica{Volume: req.Volume, SourceNode: p.Fingerprint, SourceName: p.Name, SourceAddr: p.Addr,
		SourceVolume: req.SourceVolume, Gen: req.NewGen, Created: now()}
	// One transaction: a crash leaves either the mirror or the replica
	// record, never both. The entry is marked gone under its lock, so no
	// callback or pause writes the mirror record again.
	me.mu.Lock()
	err = s.cat.BecomeReplica(rr)
	if err == nil {
		me.gone = true
	}
	me.mu.Unlock()
	if err != nil {
		return apischema.FailbackResponse{}, fmt.Errorf("failback into %s: %w", req.Volume, err)
	}
	if err := v.CBT().Remove(MirrorBitmap); err != nil {
		s.log.Warn("remove mirror dirty log", "volume", req.Volume, "err", err)
	}
	s.host.Lock()
	v.State().replica = &rr
	s.host.Unlock()
	s.log.Warn("failback: this volume is now a replica", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume)
	return apischema.FailbackResponse{Dirty: dirty, NBDPort: port}, nil
}

// failbackIntoNew creates the old source's volume afresh as the replica
// of the failed-over one: everything is sent.
func (s *Service) failbackIntoNew(ctx context.Context, p node.Peer, req apischema.FailbackRequest, port string) (apischema.FailbackResponse, error) {
	if _, err := s.CreateReplica(ctx, p, apischema.ReplicaRequest{Volume: req.Volume, Size: req.Size, SourceVolume: req.SourceVolume, Gen: req.NewGen}); err != nil {
		return apischema.FailbackResponse{}, err
	}
	s.log.Warn("failback into a new volume: full copy", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume)
	return apischema.FailbackResponse{Dirty: []blockdev.Range{{Off: 0, Len: req.Size}}, NBDPort: port}, nil
}
