package backup

import (
	"context"
	"log/slog"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// Host is what backups and restores need of the volumes' owner
// (internal/engine).
type Host interface {
	// Repo opens a known repository.
	Repo(ctx context.Context, name string) (*repo.Repo, error)

	// Freeze locks the named volumes (duplicates dropped) against every
	// other change of their layers, in name order, for one operation;
	// verb names it in the refusal when a volume is unavailable, read-only
	// or busy.
	Freeze(names []string, verb string) (Group, error)

	// StartJob runs fn as a job that works on no volume (a restore into a
	// file).
	StartJob(kind, target string, total int64, fn job.Func) (job.Info, error)

	// FillNew creates volume name of size on datastore ds ("" for the
	// default), marked unfinished, and runs fill into it as a job of kind.
	// The volume is marked finished when fill succeeds and removed when it
	// fails or is cancelled.
	FillNew(ctx context.Context, kind, name string, size int64, ds string, fill func(ctx context.Context, j *job.Job, dev blockdev.Device) error) (job.Info, error)

	// Step marks a named step of a long operation (crash tests stop the
	// daemon there).
	Step(name string)
}

// Group is a set of volumes frozen for one operation.
type Group interface {
	// Volumes are the group's volumes, in name order.
	Volumes() []Volume

	// Snapshot takes snapshot name of every volume at one instant: all
	// their I/O is held while each volume's top layer is frozen. during,
	// if set, runs for each volume under that hold, after its snapshot,
	// with the volume's tracking state.
	Snapshot(ctx context.Context, name string, during func(vol string, st *cbt.State) error) error

	// View opens snapshot name of volume vol for reading; the caller
	// closes it before the snapshot is dropped.
	View(vol, name string) (blockdev.Device, error)

	// Drop merges snapshot name away on every volume that has it.
	Drop(ctx context.Context, name string)

	// StartJob runs fn as a job on the group's volumes, which count as
	// in use until it returns; the group is unlocked when the job ends
	// (also when it fails to start).
	StartJob(kind string, total int64, fn job.Func) (job.Info, error)
}

// Volume is one volume of a Group.
type Volume struct {
	Name string
	Size int64
}

// SnapshotPrefix starts the name of the snapshot a backup reads. The
// engine merges away a snapshot so named that a crash left behind.
const SnapshotPrefix = "backup-"

// Service takes backups and restores them.
type Service struct {
	host Host
	log  *slog.Logger
}

// New returns the backup service over host; a nil log discards.
func New(host Host, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{host: host, log: log}
}
