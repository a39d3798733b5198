package chainops

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fill"
	"github.com/extrasphere/extrasphere/internal/gate"
	"github.com/extrasphere/extrasphere/internal/job"
)

// Host is what the chain operations need of the volumes' owner
// (internal/engine).
type Host interface {
	// Lock and Unlock are the volumes' lock (the engine's Engine.mu).
	// The methods named *Locked, here and on Vol, are guarded by it. It
	// is taken after a volume's SnapMu, never the reverse, and held
	// briefly: never across device I/O.
	Lock()
	Unlock()

	// LookupLocked finds a volume by name (errkind.ErrVolumeNotFound,
	// errkind.ErrClosed while stopping).
	LookupLocked(name string) (Vol, error)
	// VolumesLocked is every volume.
	VolumesLocked() []Vol
	// ClosedLocked says the engine is stopping.
	ClosedLocked() bool
	// CloneUsersLocked lists the volumes other than v whose chains read
	// the layer at path.
	CloneUsersLocked(v Vol, path string) []string
	// DatastoreLocked finds an online datastore
	// (errkind.ErrDatastoreNotFound, errkind.ErrDatastoreOffline).
	DatastoreLocked(name string) (Datastore, error)

	// StartJobLocked runs fn as a job of kind on v: v counts as in use
	// until fn returns.
	StartJobLocked(v Vol, kind string, total int64, fn job.Func) (*job.Job, error)

	// CreateStaged makes volume name on datastore ds from files write
	// puts in a staging directory, commits it and serves the volume.
	CreateStaged(ctx context.Context, name, ds, what string, write func(st *datastore.Staged, d *datastore.Datastore) error) error

	// Background runs fn beside the daemon; a clean stop waits for it.
	Background(fn func())
	// Step marks a named step of a long operation (crash tests stop the
	// daemon there).
	Step(name string)
}

// Datastore is one datastore as the chain operations see it.
type Datastore struct {
	Name string
	DS   *datastore.Datastore
}

// Vol is one volume as the Host lends it. Two Vols are the same volume
// when their names and their SnapMus are.
type Vol interface {
	Name() string
	// SnapMu orders the changes of the volume's stack.
	SnapMu() *sync.Mutex

	// Files, Layers and Datastore change only in a pivot, which holds
	// SnapMu and the Host's lock: a caller holding either reads them
	// consistently.
	Files() datastore.VolumeFiles
	// Layers is what sits below the gate: a *chain.Chain, or the base
	// alone.
	Layers() blockdev.Device
	Datastore() Datastore
	// Gate is the top of the volume's stack, nil when it is not served.
	Gate() *gate.Gate
	// Filling is the base while the volume is restored instantly from a
	// backup, nil otherwise.
	Filling() *fill.Device

	// InfoLocked is what the operations check before they start.
	InfoLocked() VolInfo
	// MarkAllChanged marks every block changed in every CBT bitmap of
	// the volume (a revert changes content no write went through).
	MarkAllChanged() error

	// BeginPivot holds the volume's I/O for a change of its stack; the
	// caller holds SnapMu.
	BeginPivot() (Pivot, error)
}

// VolInfo is what the operations read of a volume under the Host's lock.
type VolInfo struct {
	Err      error  // why the volume cannot be served
	Served   bool   // it has a stack
	Op       string // the exclusive change in progress, "" if none
	ReadOnly bool
}

// Pivot is a held change of a volume's stack (the engine's pivot, see
// internal/engine/pivot.go): I/O is held from BeginPivot to End.
type Pivot interface {
	// Current is the device below the gate as the I/O saw it last.
	Current() blockdev.Device
	// Layers is what was below the gate at begin.
	Layers() blockdev.Device
	// OnAbort registers an undo step, run (newest first) if End comes
	// before Commit.
	OnAbort(func())
	// Install puts the volume's filters over layers behind the gate and
	// records them as the volume's, with edit (nil for none) applied to
	// its files in the same critical section.
	Install(layers blockdev.Device, edit func(*datastore.VolumeFiles))
	// Move is Install for a volume that changes datastore: files replace
	// the volume's and ds becomes its datastore.
	Move(layers blockdev.Device, files datastore.VolumeFiles, ds Datastore)
	// Commit makes the change final.
	Commit()
	// End releases the I/O and returns how long it was held.
	End() time.Duration
}

// Service runs the chain operations.
type Service struct {
	host Host
	log  *slog.Logger
}

// New returns the chain operations over host; a nil log discards.
func New(host Host, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{host: host, log: log}
}

// dirOf is v's own directory.
func dirOf(v Vol) string { return v.Datastore().DS.VolumeDir(v.Name()) }

// errorf tags a message with its kind (internal/errkind).
func errorf(kind error, format string, a ...any) error { return errkind.Errorf(kind, format, a...) }
