package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repos"
)

// KindBackup is the job kind of a backup run.
const KindBackup = "backup"

// metaCBTGeneration is the volume metadata key, in a backup, of the CBT
// generation that began at the backup's instant (cbt.Rotate). The next
// backup of the volume is incremental exactly when its bitmap is still
// that generation: the bitmap then holds every change since this backup.
const metaCBTGeneration = "cbt.generation"

// Bitmap is the CBT bitmap a repository's backups rotate.
func Bitmap(repoName string) string { return "backup-" + repoName }

// Backup backs up volumes at one instant as a job: a group snapshot with
// I/O held on every volume, during which each volume's backup bitmap
// starts a new generation; then each volume's snapshot is read (only the
// changed chunks when the previous backup of the volume in this
// repository began the bitmap's old generation) into the repository, the
// manifest is written, and the snapshot is merged away. The volumes keep
// running; snapshot changes on them wait until it ends
// (errkind.ErrVolumeInUse).
func (s *Service) Backup(ctx context.Context, req apischema.BackupRequest) (job.Info, error) {
	if len(req.Volumes) == 0 {
		return job.Info{}, errkind.Errorf(errkind.ErrInvalidArgument, "back up what? name one or more volumes")
	}
	if req.Repo == "" {
		req.Repo = apischema.DefaultRepo
	}
	r, err := s.host.Repo(ctx, req.Repo)
	if err != nil {
		return job.Info{}, err
	}
	g, err := s.host.Freeze(req.Volumes, "back up")
	if err != nil {
		return job.Info{}, err
	}
	vs := g.Volumes()
	names := make([]string, len(vs))
	var total int64
	for i, v := range vs {
		names[i] = v.Name
		total += v.Size
	}
	j, err := g.StartJob(KindBackup, total, func(ctx context.Context, j *job.Job) error {
		err := s.run(ctx, r, req, g, j)
		if err != nil {
			s.log.Warn("backup failed", "job", j.ID(), "volumes", names, "repository", req.Repo, "err", err)
		}
		return err
	})
	if err != nil {
		return job.Info{}, fmt.Errorf("back up %v: %w", names, err)
	}
	return j, nil
}

// run is the backup job; g is frozen.
func (s *Service) run(ctx context.Context, r *repo.Repo, req apischema.BackupRequest, g Group, j *job.Job) error {
	snap := SnapshotPrefix + j.ID()
	bitmap := Bitmap(req.Repo)
	rotated := map[string]cbt.Rotated{}
	at := time.Now().UTC()
	j.SetDetail("taking snapshot " + snap)
	err := g.Snapshot(ctx, snap, func(vol string, st *cbt.State) error {
		rot, err := st.Rotate(bitmap, at)
		rotated[vol] = rot
		return err
	})
	// Whatever happens next, the snapshot goes (merged back, live); a
	// crash leaves it to the engine's next start.
	defer g.Drop(context.WithoutCancel(ctx), snap)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	s.host.Step("backup.after-snapshot")
	prev, err := latestVolumes(ctx, r)
	if err != nil {
		return fmt.Errorf("backup: list the repository's backups: %w", err)
	}
	b, err := r.NewBackup(ctx, repo.BackupOptions{Group: strings.Join(req.Volumes, ","), Tags: req.Volumes, Time: at,
		Progress: func(done, total int64) { j.SetTotal(total); j.SetDone(done) }, Total: j.Info().Total})
	if err != nil {
		return RepoError(req.Repo, err)
	}
	defer b.Close()
	for _, v := range g.Volumes() {
		view, err := g.View(v.Name, snap)
		if err != nil {
			return fmt.Errorf("backup volume %s: %w", v.Name, err)
		}
		rot := rotated[v.Name]
		opts := repo.VolumeOptions{Meta: map[string]string{metaCBTGeneration: generation(rot.Next.Created)},
			Zeros: allocationZeros(view)} // a thin volume's holes are not read
		how := "full"
		if p := prev[v.Name]; p != nil && !req.Full && !rot.Created.IsZero() && p.Meta[metaCBTGeneration] == generation(rot.Created) && p.Size == v.Size {
			opts.Prev = p
			opts.Dirty = rot.Dirty
			if opts.Dirty == nil {
				// Nothing changed since Prev: an empty set, not nil
				// (nil would make repo read the whole volume).
				opts.Dirty = []blockdev.Range{}
			}
			how = "incremental"
		}
		j.SetDetail(fmt.Sprintf("reading %s (%s)", v.Name, how))
		_, err = b.AddVolume(ctx, v.Name, view, opts) // a Device is a repo.Source
		view.Close()
		if err != nil {
			return fmt.Errorf("backup volume %s: %w", v.Name, RepoError(req.Repo, err))
		}
	}
	m, err := b.Commit(ctx)
	if m == nil {
		return fmt.Errorf("backup: %w", RepoError(req.Repo, err))
	}
	st := m.Stats
	j.SetDetail(fmt.Sprintf("backup %s: %d bytes read, %d new, %d stored", m.ID, st.BytesRead, st.BytesNew, st.BytesStored))
	s.log.Info("backup done", "backup", m.ID, "repository", req.Repo, "volumes", req.Volumes,
		"read", st.BytesRead, "reused", st.BytesReused, "new", st.BytesNew, "stored", st.BytesStored)
	if err != nil {
		s.log.Warn("backup committed with a warning", "backup", m.ID, "err", err)
	}
	return nil
}

// generation formats a CBT generation for a backup's metadata.
func generation(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// latestVolumes maps each volume name to its entry in the newest backup
// that holds it.
func latestVolumes(ctx context.Context, r *repo.Repo) (map[string]*repo.Volume, error) {
	ms, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]*repo.Volume{}
	var when = map[string]time.Time{}
	for _, m := range ms {
		for _, v := range m.Volumes {
			if t, ok := when[v.Name]; !ok || m.Time.After(t) {
				out[v.Name], when[v.Name] = v, m.Time
			}
		}
	}
	return out, nil
}

// RepoError tags a repository error with the kind the API maps.
func RepoError(name string, err error) error {
	if err == nil {
		return nil
	}
	if name == "" {
		name = apischema.DefaultRepo
	}
	switch {
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, repo.ErrAmbiguous):
		return errkind.Errorf(errkind.ErrBackupNotFound, "repository %s: %w", name, err)
	case errors.Is(err, repo.ErrInvalid):
		return errkind.Errorf(errkind.ErrInvalidArgument, "repository %s: %w", name, err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return errkind.Errorf(repos.ErrRepo, "repository %s: %w", name, err)
}
