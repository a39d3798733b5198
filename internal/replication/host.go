package replication

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Host is what replication needs of the volumes' owner (internal/engine).
type Host interface {
	// Lock and Unlock are the volumes' lock (the engine's Engine.mu).
	// The methods named *Locked, here and on Vol, and the fields of
	// State marked so, are guarded by it. It is taken after a volume's
	// SnapMu (never the reverse), never together with a mirror entry's
	// lock, and held briefly: never across device I/O or a network call.
	Lock()
	Unlock()

	// LookupLocked finds a volume by name (errkind.ErrVolumeNotFound;
	// errkind.ErrClosed while stopping).
	LookupLocked(name string) (Vol, error)
	// VolumesLocked is every volume.
	VolumesLocked() []Vol
	// ClosedLocked says the engine is stopping.
	ClosedLocked() bool

	// CreateVolume creates an empty volume of size.
	CreateVolume(ctx context.Context, name string, size int64) error
}

// Vol is one volume as the Host lends it. Two Vols are the same volume
// when their States are the same.
type Vol interface {
	Name() string
	// State is the volume's replication state, kept with the volume.
	State() *State
	// SnapMu orders the changes of the volume's stack: snapshot, merge,
	// promote, migration, mirror changes, failover.
	SnapMu() *sync.Mutex
	// CBT is the volume's tracking state, nil when it is not served;
	// never replaced.
	CBT() *cbt.State

	// InfoLocked is what replication reads of the volume.
	InfoLocked() VolInfo
	// SetOpLocked marks an exclusive change in progress ("" when done):
	// no NBD client opens the volume meanwhile.
	SetOpLocked(op string)
	// AddConnsLocked counts NBD connections opened (n > 0) or closed.
	AddConnsLocked(n int)
	// GoneLocked is closed when the volume's connections must end.
	GoneLocked() <-chan struct{}
	// CutLocked closes it: every connection of the volume is dropped.
	CutLocked()

	// BeginPivot holds the volume's I/O for a change of its stack; the
	// caller holds SnapMu.
	BeginPivot() (Pivot, error)
}

// VolInfo is a volume's state as replication reads it (under the Host's
// lock).
type VolInfo struct {
	Size     int64
	ReadOnly bool
	Gate     *gate.Gate // the top of the stack; nil when not served
	Err      error      // why the volume cannot be served
	Op       string     // the exclusive change in progress, "" if none
	Conns    int        // open NBD connections
}

// Served says the volume has a stack and tracking.
func (in VolInfo) Served() bool { return in.Gate != nil && in.Err == nil }

// Pivot is a held change of a volume's stack (the engine's pivot).
type Pivot interface {
	// Reinstall wraps the volume's filters again over the layers it
	// has: a change of the mirror (State) takes effect.
	Reinstall()
	// Commit makes the change final; End without it undoes it.
	Commit()
	// End releases the I/O.
	End()
}

// State is replication's part of one volume: its mirror, if it has one,
// and its replica role, if another node mirrors into it. The engine keeps
// it with the volume and reads it through Mirror and ReplicaLocked.
type State struct {
	// mir is the volume's mirror, nil if none. It is set and cleared
	// holding SnapMu and the volume's I/O (a pivot), so every pivot
	// wraps the new layers with the current one.
	mir atomic.Pointer[mirrorEntry]

	// replica is set when another node mirrors into this volume;
	// streams counts that node's open NBD connections; rfence admits the
	// writes of one stream session at a time (nil until the first
	// stream). All three guarded by the Host's lock.
	replica *catalog.Replica
	streams int
	rfence  *replicaFence
}

// Mirror is the volume's running mirror (its filter sits in the stack),
// nil if none.
func (st *State) Mirror() *mirror.Mirror {
	if me := st.mir.Load(); me != nil {
		return me.m
	}
	return nil
}

// ReplicaLocked is the volume's replica record, nil if it is no replica.
func (st *State) ReplicaLocked() *catalog.Replica { return st.replica }

// Options configure the Service.
type Options struct {
	Catalog    *catalog.Catalog
	Node       *node.Service // nil: no node identity (no extrasphere:// targets, no replicas)
	NBDAddr    string        // our NBD TCP listener, "" if none
	Failpoints *failpoint.Set
	Logger     *slog.Logger
}

// Service runs the mirrors of this node's volumes and the replicas it
// holds for others.
type Service struct {
	host Host
	cat  *catalog.Catalog
	node *node.Service
	nbd  string
	fp   *failpoint.Set
	log  *slog.Logger
}

// New returns the replication service over host.
func New(host Host, o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{host: host, cat: o.Catalog, node: o.Node, nbd: o.NBDAddr, fp: o.Failpoints, log: o.Logger}
}

// errorf tags a message with its kind (internal/errkind).
func errorf(kind error, format string, a ...any) error { return errkind.Errorf(kind, format, a...) }

// now is the clock of records (catalog).
func now() time.Time { return time.Now().UTC() }
