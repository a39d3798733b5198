package engine

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
// at a time (openReplicaStream). Failover ends the record's
// replica role: the volume becomes writable here, and its "mirror" CBT
// bitmap starts recording what it writes, for failback.

type replicaRequest = apischema.ReplicaRequest
type replicaResponse = apischema.ReplicaResponse

// loadReplicas attaches the replica records to their volumes at start.
func (e *Engine) loadReplicas() {
	recs, err := e.cat.Replicas()
	if err != nil {
		e.log.Error("load replicas", "err", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range recs {
		if v, ok := e.volumes[r.Volume]; ok {
			r := r
			v.replica = &r
		}
	}
}

// nbdPort is the port of our NBD TCP listener, for peers.
func (e *Engine) nbdPort() (string, error) {
	if e.cfg.NBDAddr == "" {
		return "", errorf(errkind.ErrNoTCP, "this node serves NBD only on its unix socket: start it with --nbd 0.0.0.0:10809 to hold replicas")
	}
	_, port, err := net.SplitHostPort(e.cfg.NBDAddr)
	if err != nil {
		return "", errorf(errkind.ErrNoTCP, "NBD address %q: %v", e.cfg.NBDAddr, err)
	}
	return port, nil
}

// CreateReplica makes (or re-arms) the replica volume a paired node asks
// for.
func (e *Engine) CreateReplica(ctx context.Context, p node.Peer, req apischema.ReplicaRequest) (apischema.ReplicaResponse, error) {
	port, err := e.nbdPort()
	if err != nil {
		return apischema.ReplicaResponse{}, err
	}
	if req.Gen == "" || strings.ContainsAny(req.Gen, "@/") {
		return apischema.ReplicaResponse{}, errorf(errkind.ErrInvalidArgument, "replica %s: bad generation %q", req.Volume, req.Gen)
	}
	e.mu.Lock()
	v, exists := e.volumes[req.Volume]
	var old *catalog.Replica
	if exists {
		old = v.replica
	}
	e.mu.Unlock()
	rec := catalog.Replica{Volume: req.Volume, SourceNode: p.Fingerprint, SourceName: p.Name, SourceAddr: p.Addr,
		SourceVolume: req.SourceVolume, Gen: req.Gen, Created: now()}
	switch {
	case exists && old == nil:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeExists, "volume %s exists on node %s and is not a replica of %s: choose another target name, or remove it there",
			req.Volume, e.nodeName(), p.Name)
	case exists && !old.FailedOver.IsZero():
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s was failed over at %s and takes writes there: it cannot become a replica again (use failback on %s)",
			req.Volume, e.nodeName(), old.FailedOver.Format(time.RFC3339), e.nodeName())
	case exists && old.SourceNode != p.Fingerprint:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s is a replica of node %s, not of %s", req.Volume, e.nodeName(), old.SourceName, p.Name)
	case exists && v.files.Size < req.Size:
		return apischema.ReplicaResponse{}, errorf(errkind.ErrInvalidArgument, "replica %s is %d bytes, the source volume %d", req.Volume, v.files.Size, req.Size)
	case !exists:
		if _, err := e.CreateVolume(ctx, CreateOptions{Name: req.Volume, Size: req.Size}); err != nil {
			return apischema.ReplicaResponse{}, err
		}
	}
	if err := e.cat.PutReplica(rec); err != nil {
		return apischema.ReplicaResponse{}, fmt.Errorf("replica %s: %w", req.Volume, err)
	}
	e.mu.Lock()
	var rf *replicaFence
	if v, ok := e.volumes[req.Volume]; ok {
		v.replica = &rec
		rf = v.replicaFenceLocked(rec.Gen)
	}
	e.mu.Unlock()
	if rf != nil && rf.prev != nil {
		// Streams of an older generation write no more from here.
		if err := rf.prev.Seal(ctx); err != nil {
			return apischema.ReplicaResponse{}, fmt.Errorf("replica %s: end the streams of the previous mirror generation: %w", req.Volume, err)
		}
	}
	e.log.Info("replica ready", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume, "gen", req.Gen)
	return apischema.ReplicaResponse{NBDPort: port}, nil
}

func (e *Engine) nodeName() string {
	if ns := e.Node(); ns != nil {
		if id, err := ns.Identity(); err == nil {
			return id.Name
		}
	}
	return "(this node)"
}

// openReplicaStream is OpenExport for a stream name VOL@GEN@EPOCH
// (replicaExport): the mirror of a paired node writing into its replica.
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
func (e *Engine) openReplicaStream(ctx context.Context, name string) (*nbd.Export, func(), error) {
	vol, gen, epoch, perr := parseReplicaExport(name)
	refuse := func(format string, a ...any) (*nbd.Export, func(), error) {
		return nil, nil, refuseStream(format, a...)
	}
	cs, ok := nbd.PeerTLS(ctx)
	ns := e.Node()
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
	e.mu.Lock()
	v, err := e.checkReplicaStreamLocked(name, vol, gen, p)
	var rf *replicaFence
	if err == nil {
		rf = v.replicaFenceLocked(gen)
	}
	e.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, replicaFenceTimeout)
	h, err := rf.open(fctx, epoch)
	cancel()
	if err != nil {
		e.log.Warn("replica stream refused", "volume", vol, "epoch", epoch, "err", err)
		return nil, nil, fmt.Errorf("export %q: volume %s on node %s: %w (the mirror retries with a new stream): %w", name, vol, e.nodeName(), err, nbd.ErrUnknownExport)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// The fence may have waited: look again.
	if v2, err := e.checkReplicaStreamLocked(name, vol, gen, p); err != nil || v2 != v {
		h.Close()
		if err == nil {
			err = fmt.Errorf("export %q: volume %s was replaced: %w", name, vol, nbd.ErrUnknownExport)
		}
		return nil, nil, err
	}
	v.conns++
	v.streams++
	if v.gone == nil {
		v.gone = make(chan struct{})
	}
	gone, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() {
		once.Do(func() {
			h.Close()
			close(released)
			e.mu.Lock()
			v.conns--
			v.streams--
			e.mu.Unlock()
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
	}(v.gone)
	e.log.Info("replica stream open", "volume", vol, "source", p.Name, "epoch", epoch)
	return &nbd.Export{Gone: gone, Name: name, Description: fmt.Sprintf("replica %s of %s/%s", vol, p.Name, v.replica.SourceVolume),
		Device: fence.NewDevice(v.dev, h, false)}, release, nil
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
func (e *Engine) checkReplicaStreamLocked(name, vol, gen string, p node.Peer) (*volume, error) {
	refuse := func(format string, a ...any) (*volume, error) {
		return nil, refuseStream(format, a...)
	}
	v, ok := e.volumes[vol]
	switch {
	case e.closed:
		return nil, fmt.Errorf("export %q: %w: %w", name, errkind.ErrClosed, nbd.ErrUnknownExport)
	case !ok:
		return refuse("volume %s does not exist on node %s (was it removed?)", vol, e.nodeName())
	case v.replica == nil:
		return refuse("volume %s on node %s is not a replica", vol, e.nodeName())
	case v.replica.SourceNode != p.Fingerprint:
		return refuse("volume %s on node %s is a replica of node %s, not of %s", vol, e.nodeName(), v.replica.SourceName, p.Name)
	case !v.replica.FailedOver.IsZero():
		return refuse("volume %s was failed over on node %s at %s; it no longer takes writes from %s. Stop the VM on %s; then run `extrasphere failback %s` on %s",
			vol, e.nodeName(), v.replica.FailedOver.Format(time.RFC3339), p.Name, p.Name, vol, e.nodeName())
	case v.replica.Gen != gen:
		return refuse("volume %s on node %s belongs to mirror generation %s, not %s (the mirror was recreated)", vol, e.nodeName(), v.replica.Gen, gen)
	case v.err != nil || v.dev == nil:
		return nil, fmt.Errorf("export %q: volume unavailable (%v): %w", name, v.err, nbd.ErrUnknownExport)
	case v.op != "":
		return nil, fmt.Errorf("export %q: volume busy (%s in progress): %w", name, v.op, nbd.ErrUnknownExport)
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

// replicaFenceLocked is v's fence for generation gen (e.mu held); a new
// generation gets a new one.
func (v *volume) replicaFenceLocked(gen string) *replicaFence {
	if v.rfence == nil || v.rfence.gen != gen {
		rf := &replicaFence{gen: gen, f: fence.New(replicaFenceTimeout)}
		if v.rfence != nil {
			rf.prev = v.rfence.f
		}
		v.rfence = rf
	}
	return v.rfence
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
func (e *Engine) replicaInfo(v *volume) (apischema.MirrorInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := v.replica
	if r == nil {
		return apischema.MirrorInfo{}, false
	}
	in := apischema.MirrorInfo{Volume: v.name, Role: apischema.RoleReplica, Mode: apischema.ModeSync, Gen: r.Gen,
		Source: r.SourceName + "/" + r.SourceVolume, Streams: v.streams, FailedOver: r.FailedOver}
	in.State = apischema.ReplicaReceiving
	if v.streams == 0 {
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
func (e *Engine) Failover(ctx context.Context, name string, force bool) (apischema.MirrorInfo, error) {
	e.mu.Lock()
	v, err := e.lookupLocked(name)
	if err == nil {
		switch {
		case v.replica == nil:
			err = errorf(errkind.ErrNotReplica, "volume %s is not a replica on this node: failover runs on the node that holds the replica", name)
		case !v.replica.FailedOver.IsZero():
			err = errorf(errkind.ErrNotReplica, "volume %s was already failed over at %s", name, v.replica.FailedOver.Format(time.RFC3339))
		case v.streams > 0 && !force:
			err = errorf(errkind.ErrVolumeInUse, "volume %s still receives writes from node %s (%d connection(s)): stop the VM there first (or `extrasphere mirror pause %s` there); pass --force only if that node is gone",
				name, v.replica.SourceName, v.streams, v.replica.SourceVolume)
		case v.dev == nil || v.cbt == nil:
			err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.err)
		}
	}
	var rf *replicaFence
	var srcName string
	if err == nil {
		rf, srcName = v.replicaFenceLocked(v.replica.Gen), v.replica.SourceName
	}
	e.mu.Unlock()
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
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	p, err := e.beginPivot(v)
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	defer p.end()
	// From this instant, the bitmap records every write made here.
	if v.cbt.Has(MirrorBitmap) {
		_, err = v.cbt.Clear(MirrorBitmap)
	} else {
		_, err = v.cbt.Enable(MirrorBitmap, now())
	}
	if err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failover %s: %w", name, err)
	}
	e.mu.Lock()
	r := *v.replica
	e.mu.Unlock()
	r.FailedOver, r.NewGen = now(), newGen()
	if err := e.cat.PutReplica(r); err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failover %s: %w", name, err)
	}
	e.mu.Lock()
	v.replica = &r
	if v.gone != nil {
		close(v.gone) // the source's stream and read-only readers are cut
		v.gone = nil
	}
	e.mu.Unlock()
	p.install(p.layers, nil)
	p.commit()
	done = true
	e.log.Warn("failover: replica is now writable here", "volume", name, "source", r.SourceName+"/"+r.SourceVolume)
	in, _ := e.replicaInfo(v)
	return in, nil
}

// Failback mirrors a failed-over volume back to the node it came from,
// sending only what differs: what was written here since failover and
// what the old source wrote that never reached here. The old source's
// volume must be idle. If both sides wrote, it refuses (split brain).
func (e *Engine) Failback(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	e.mu.Lock()
	v, err := e.lookupLocked(name)
	var r catalog.Replica
	if err == nil {
		switch {
		case v.replica == nil || v.replica.FailedOver.IsZero():
			err = errorf(errkind.ErrNotReplica, "volume %s was not failed over on this node: failback runs where failover ran", name)
		case v.cbt == nil || v.dev == nil:
			err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", name, v.err)
		default:
			r = *v.replica
		}
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.MirrorInfo{}, err
	}
	var p node.Peer
	if ns := e.Node(); ns != nil {
		p, _ = ns.Peers().Get(r.SourceNode)
	}
	if p.Fingerprint == "" || p.Addr == "" {
		return apischema.MirrorInfo{}, errorf(errkind.ErrPeer, "failback %s: node %s (%s) is not paired or its address is unknown: pair again with `extrasphere node pair HOST:PORT --code CODE`", name, r.SourceName, r.SourceNode)
	}
	if !v.snapMu.TryLock() {
		return apischema.MirrorInfo{}, errorf(errkind.ErrVolumeInUse, "cannot fail back volume %s: a snapshot removal, promote or migration is running on it; retry when it is done", name)
	}
	defer v.snapMu.Unlock()
	if v.mir.Load() != nil {
		return apischema.MirrorInfo{}, errorf(errkind.ErrMirrorExists, "volume %s already has a mirror", name)
	}
	wrote, err := v.cbt.Ranges(MirrorBitmap)
	if err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failback %s: %w", name, err)
	}
	req := apischema.FailbackRequest{Volume: r.SourceVolume, OldGen: r.Gen, NewGen: r.NewGen, SourceVolume: name, Size: v.files.Size, TargetWrote: len(wrote) > 0}
	var resp apischema.FailbackResponse
	if err := e.Node().PeerClient(p.Addr, p.Fingerprint).Do(ctx, "POST", apischema.PeerFailback, req, &resp); err != nil {
		return apischema.MirrorInfo{}, peerError(name, p, err)
	}
	// What the old source lacks joins the dirty log, durably, before the
	// record says we are the source.
	for _, d := range resp.Dirty {
		if err := v.cbt.MarkRange(MirrorBitmap, d.Off, d.Len); err != nil {
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
	if err := e.cat.BecomeSource(rec); err != nil {
		return apischema.MirrorInfo{}, fmt.Errorf("failback %s: %w", name, err)
	}
	e.mu.Lock()
	v.replica = nil
	e.mu.Unlock()
	if err := e.attachMirror(v, rec); err != nil {
		return apischema.MirrorInfo{}, err
	}
	e.log.Info("failback: mirroring back", "volume", name, "to", p.Name+"/"+r.SourceVolume, "dirty_ranges", len(resp.Dirty)+len(wrote))
	return e.mirrorInfo(v), nil
}

// AcceptFailback is the old source's side of failback (peer API): its
// volume becomes the replica of the failed-over one, and it answers what
// it holds that the other side may lack.
//
// Concurrent callers (a retried request, a pause from the CLI) are
// serialised by the volume's snapMu, taken before anything is checked:
// every check and the change it allows happen under it, and the volume is
// marked busy (v.op) so that no NBD client opens it meanwhile.
func (e *Engine) AcceptFailback(ctx context.Context, p node.Peer, req apischema.FailbackRequest) (apischema.FailbackResponse, error) {
	port, err := e.nbdPort()
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	e.mu.Lock()
	v, err := e.lookupLocked(req.Volume)
	e.mu.Unlock()
	if errors.Is(err, errkind.ErrVolumeNotFound) {
		// The old source's volume was removed (the manual resolution of
		// a split brain): it comes back as a replica with a full copy.
		return e.failbackIntoNew(ctx, p, req, port)
	}
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	if !v.snapMu.TryLock() {
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s is busy (snapshot removal, promote, migration or another failback); retry", req.Volume, e.nodeName())
	}
	defer v.snapMu.Unlock()
	e.mu.Lock()
	var already bool
	size := v.files.Size
	switch {
	case v.op != "":
		err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s is busy (%s in progress); retry", req.Volume, e.nodeName(), v.op)
	case v.conns > 0:
		err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s has %d open NBD connection(s): stop the VM there before failback", req.Volume, e.nodeName(), v.conns)
	case v.replica != nil:
		already = v.replica.SourceNode == p.Fingerprint && v.replica.Gen == req.NewGen
		if !already {
			err = errorf(errkind.ErrVolumeInUse, "volume %s on node %s is a replica of %s, not the old source of this failback", req.Volume, e.nodeName(), v.replica.SourceName)
		}
	default:
		v.op = "failback" // no NBD client opens it until the roles are swapped
		defer func() {
			e.mu.Lock()
			v.op = ""
			e.mu.Unlock()
		}()
	}
	e.mu.Unlock()
	if err != nil {
		return apischema.FailbackResponse{}, err
	}
	if already { // a retried failback: resend everything, it is safe
		return apischema.FailbackResponse{Dirty: []blockdev.Range{{Off: 0, Len: size}}, NBDPort: port}, nil
	}
	me := v.mir.Load()
	if me == nil {
		return apischema.FailbackResponse{}, errorf(errkind.ErrMirrorNotFound, "volume %s on node %s has no mirror to %s: nothing to fail back into; remove it there to get a full copy", req.Volume, e.nodeName(), p.Name)
	}
	me.mu.Lock()
	rec := me.rec
	me.mu.Unlock()
	switch {
	case rec.PeerFingerprint != p.Fingerprint || rec.PeerVolume != req.SourceVolume:
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s mirrors to %s, not to %s/%s", req.Volume, e.nodeName(), rec.Target, p.Name, req.SourceVolume)
	case rec.Gen != req.OldGen:
		return apischema.FailbackResponse{}, errorf(errkind.ErrVolumeInUse, "volume %s on node %s mirrors in generation %s, the failover was of %s", req.Volume, e.nodeName(), rec.Gen, req.OldGen)
	case rec.Diverged && req.TargetWrote:
		return apischema.FailbackResponse{}, errorf(errkind.ErrSplitBrain,
			"split brain: volume %s on node %s acknowledged writes that never reached %s, and %s/%s was written after failover. Neither side is overwritten. Keep one: see README, \"Split brain\"",
			req.Volume, e.nodeName(), p.Name, p.Name, req.SourceVolume)
	}
	dirty := (&dirtyLog{st: v.cbt}).Ranges()
	if !rec.Synced {
		dirty = []blockdev.Range{{Off: 0, Len: size}}
	}
	if err := e.detachMirror(ctx, v); err != nil {
		e.log.Warn("stop mirror for failback", "volume", req.Volume, "err", err)
	}
	rr := catalog.Replica{Volume: req.Volume, SourceNode: p.Fingerprint, SourceName: p.Name, SourceAddr: p.Addr,
		SourceVolume: req.SourceVolume, Gen: req.NewGen, Created: now()}
	// One transaction: a crash leaves either the mirror or the replica
	// record, never both. The entry is marked gone under its lock, so no
	// callback or pause writes the mirror record again.
	me.mu.Lock()
	err = e.cat.BecomeReplica(rr)
	if err == nil {
		me.gone = true
	}
	me.mu.Unlock()
	if err != nil {
		return apischema.FailbackResponse{}, fmt.Errorf("failback into %s: %w", req.Volume, err)
	}
	if err := v.cbt.Remove(MirrorBitmap); err != nil {
		e.log.Warn("remove mirror dirty log", "volume", req.Volume, "err", err)
	}
	e.mu.Lock()
	v.replica = &rr
	e.mu.Unlock()
	e.log.Warn("failback: this volume is now a replica", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume)
	return apischema.FailbackResponse{Dirty: dirty, NBDPort: port}, nil
}

// failbackIntoNew creates the old source's volume afresh as the replica
// of the failed-over one: everything is sent.
func (e *Engine) failbackIntoNew(ctx context.Context, p node.Peer, req apischema.FailbackRequest, port string) (apischema.FailbackResponse, error) {
	if _, err := e.CreateReplica(ctx, p, apischema.ReplicaRequest{Volume: req.Volume, Size: req.Size, SourceVolume: req.SourceVolume, Gen: req.NewGen}); err != nil {
		return apischema.FailbackResponse{}, err
	}
	e.log.Warn("failback into a new volume: full copy", "volume", req.Volume, "source", p.Name+"/"+req.SourceVolume)
	return apischema.FailbackResponse{Dirty: []blockdev.Range{{Off: 0, Len: req.Size}}, NBDPort: port}, nil
}
