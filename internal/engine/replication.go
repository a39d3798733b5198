package engine

import (
	"context"
	"sync"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/node"
	"github.com/extrasphere/extrasphere/internal/replication"
)

// Mirrors, replicas, failover and failback are internal/replication's;
// the engine is its Host and keeps each volume's replication.State with
// the volume (volume.repl), whose mirror the stack wraps (wrapInner).

// CreateMirror starts mirroring a volume (replication.Service.CreateMirror).
func (e *Engine) CreateMirror(ctx context.Context, o apischema.MirrorOptions) (apischema.MirrorInfo, error) {
	return e.repl.CreateMirror(ctx, o)
}

// ListMirrors describes the mirrors and replicas; vol "" means all.
func (e *Engine) ListMirrors(ctx context.Context, vol string) ([]apischema.MirrorInfo, error) {
	return e.repl.ListMirrors(ctx, vol)
}

// PauseMirror stops sending to the replica; writes are tracked.
func (e *Engine) PauseMirror(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	return e.repl.PauseMirror(ctx, name)
}

// ResumeMirror reconnects a paused or refused mirror and resyncs.
func (e *Engine) ResumeMirror(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	return e.repl.ResumeMirror(ctx, name)
}

// RemoveMirror stops and forgets a volume's mirror.
func (e *Engine) RemoveMirror(ctx context.Context, name string) error {
	return e.repl.RemoveMirror(ctx, name)
}

// StopMirrorWaits ends every wait for a replica, for a daemon stop
// (replication.Service.StopMirrorWaits).
func (e *Engine) StopMirrorWaits() { e.repl.StopMirrorWaits() }

// Failover makes a replica the writable volume here.
func (e *Engine) Failover(ctx context.Context, name string, force bool) (apischema.MirrorInfo, error) {
	return e.repl.Failover(ctx, name, force)
}

// Failback mirrors a failed-over volume back to the node it came from.
func (e *Engine) Failback(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	return e.repl.Failback(ctx, name)
}

// CreateReplica makes (or re-arms) the replica volume a paired node asks
// for (peer API).
func (e *Engine) CreateReplica(ctx context.Context, p node.Peer, req apischema.ReplicaRequest) (apischema.ReplicaResponse, error) {
	return e.repl.CreateReplica(ctx, p, req)
}

// AcceptFailback is the old source's side of failback (peer API).
func (e *Engine) AcceptFailback(ctx context.Context, p node.Peer, req apischema.FailbackRequest) (apischema.FailbackResponse, error) {
	return e.repl.AcceptFailback(ctx, p, req)
}

// replHost is the engine as internal/replication's Host.
type replHost struct{ e *Engine }

var _ replication.Host = replHost{}

func (h replHost) Lock()              { h.e.mu.Lock() }
func (h replHost) Unlock()            { h.e.mu.Unlock() }
func (h replHost) ClosedLocked() bool { return h.e.closed }

func (h replHost) LookupLocked(name string) (replication.Vol, error) {
	v, err := h.e.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	return replVol{h.e, v}, nil
}

func (h replHost) VolumesLocked() []replication.Vol {
	out := make([]replication.Vol, 0, len(h.e.volumes))
	for _, v := range h.e.volumes {
		out = append(out, replVol{h.e, v})
	}
	return out
}

func (h replHost) CreateVolume(ctx context.Context, name string, size int64) error {
	_, err := h.e.CreateVolume(ctx, CreateOptions{Name: name, Size: size})
	return err
}

// replVol is one volume as a replication.Vol.
type replVol struct {
	e *Engine
	v *volume
}

func (r replVol) Name() string                { return r.v.name }
func (r replVol) State() *replication.State   { return &r.v.repl }
func (r replVol) SnapMu() *sync.Mutex         { return &r.v.snapMu }
func (r replVol) CBT() *cbt.State             { return r.v.cbt }
func (r replVol) SetOpLocked(op string)       { r.v.op = op }
func (r replVol) AddConnsLocked(n int)        { r.v.conns += n }
func (r replVol) GoneLocked() <-chan struct{} { return r.v.goneLocked() }

func (r replVol) InfoLocked() replication.VolInfo {
	v := r.v
	return replication.VolInfo{Size: v.files.Size, ReadOnly: v.files.ReadOnly, Gate: v.dev, Err: v.err, Op: v.op, Conns: v.conns}
}

func (r replVol) CutLocked() {
	if r.v.gone != nil {
		close(r.v.gone)
		r.v.gone = nil
	}
}

func (r replVol) BeginPivot() (replication.Pivot, error) {
	p, err := r.e.beginPivot(r.v)
	if err != nil {
		return nil, err
	}
	return replPivot{p}, nil
}

// replPivot is a pivot as a replication.Pivot: the mirror's changes
// re-wrap the layers the pivot began with.
type replPivot struct{ p *pivot }

func (p replPivot) Reinstall() { p.p.install(p.p.layers, nil) }
func (p replPivot) Commit()    { p.p.commit() }
func (p replPivot) End()       { p.p.end() }
