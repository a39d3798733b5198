package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// KindBackup is the job kind of a backup run.
const KindBackup = "backup"

// backupSnapPrefix names the snapshot a backup reads; one left by a crash
// is merged away at the next start (resumeMerges).
const backupSnapPrefix = "backup-"

// metaCBTGeneration is the volume metadata key, in a backup, of the CBT
// generation that began at the backup's instant (cbt.Rotate). The next
// backup of the volume is incremental exactly when its bitmap is still
// that generation: the bitmap then holds every change since this backup.
const metaCBTGeneration = "cbt.generation"

// backupBitmap is the CBT bitmap a repository's backups rotate.
func backupBitmap(repoName string) string { return "backup-" + repoName }

// Backup backs up volumes at one instant as a job: a group snapshot with
// I/O held on every volume, during which each volume's backup bitmap
// starts a new generation; then each volume's snapshot is read (only the
// changed chunks when the previous backup of the volume in this
// repository began the bitmap's old generation) into the repository, the
// manifest is written, and the snapshot is merged away. The volumes keep
// running; snapshot changes on them wait until it ends (ErrVolumeInUse).
func (e *Engine) Backup(ctx context.Context, req apischema.BackupRequest) (job.Info, error) {
	if len(req.Volumes) == 0 {
		return job.Info{}, errorf(ErrInvalidArgument, "back up what? name one or more volumes")
	}
	if req.Repo == "" {
		req.Repo = apischema.DefaultRepo
	}
	r, err := e.useRepo(ctx, req.Repo)
	if err != nil {
		return job.Info{}, err
	}
	vs, unlock, err := e.snapVolumes(req.Volumes, "back up")
	if err != nil {
		return job.Info{}, err
	}
	names := make([]string, len(vs))
	var total int64
	for i, v := range vs {
		names[i] = v.name
		total += v.files.Size
	}
	e.mu.Lock()
	j, err := e.jobs.Start(KindBackup, strings.Join(names, ","), total, func(ctx context.Context, j *job.Job) error {
		defer unlock()
		err := e.runBackup(ctx, r, req, vs, j)
		e.mu.Lock()
		for _, v := range vs {
			delete(v.jobs, j.ID())
		}
		e.mu.Unlock()
		if err != nil {
			e.log.Warn("backup failed", "job", j.ID(), "volumes", names, "repository", req.Repo, "err", err)
		}
		return err
	})
	if err == nil {
		for _, v := range vs {
			v.jobs[j.ID()] = j
		}
	}
	e.mu.Unlock()
	if err != nil {
		unlock()
		return job.Info{}, fmt.Errorf("back up %v: %w", names, err)
	}
	return j.Info(), nil
}

// runBackup is the backup job. v.snapMu of every volume is held.
func (e *Engine) runBackup(ctx context.Context, r *repo.Repo, req apischema.BackupRequest, vs []*volume, j *job.Job) error {
	snap := backupSnapPrefix + j.ID()
	bitmap := backupBitmap(req.Repo)
	rotated := map[string]cbt.Rotated{}
	at := now()
	j.SetDetail("taking snapshot " + snap)
	_, err := e.snapshotGroup(ctx, vs, snap, func(v *volume) error {
		rot, err := v.cbt.Rotate(bitmap, at)
		rotated[v.name] = rot
		return cbtError(err)
	})
	// Whatever happens next, the snapshot goes (merged back, live); a
	// crash leaves it to resumeMerges.
	defer func() {
		for _, v := range vs {
			if _, err := findSnapshot(v, layersOf(v), snap); err != nil {
				continue // not taken
			}
			if err := e.mergeNewest(context.WithoutCancel(ctx), v, snap); err != nil {
				e.log.Error("backup: remove snapshot", "volume", v.name, "snapshot", snap, "err", err)
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	e.hit("backup.after-snapshot")
	prev, err := latestVolumes(ctx, r)
	if err != nil {
		return fmt.Errorf("backup: list the repository's backups: %w", err)
	}
	b, err := r.NewBackup(ctx, repo.BackupOptions{Group: strings.Join(req.Volumes, ","), Tags: req.Volumes, Time: at,
		Progress: func(done, total int64) { j.SetTotal(total); j.SetDone(done) }, Total: j.Info().Total})
	if err != nil {
		return repoError(req.Repo, err)
	}
	defer b.Close()
	for _, v := range vs {
		ls := layersOf(v)
		k, err := findSnapshot(v, ls, snap)
		if err != nil {
			return err
		}
		view, err := snapshotView(v, k)
		if err != nil {
			return fmt.Errorf("backup volume %s: %w", v.name, err)
		}
		rot := rotated[v.name]
		opts := repo.VolumeOptions{Meta: map[string]string{metaCBTGeneration: generation(rot.Next.Created)},
			Zeros: allocationZeros(view)} // a thin volume's holes are not read
		how := "full"
		if p := prev[v.name]; p != nil && !req.Full && !rot.Created.IsZero() && p.Meta[metaCBTGeneration] == generation(rot.Created) && p.Size == v.files.Size {
			opts.Prev = p
			opts.Dirty = rot.Dirty
			if opts.Dirty == nil {
				// Nothing changed since Prev: an empty set, not nil
				// (nil would make repo read the whole volume).
				opts.Dirty = []blockdev.Range{}
			}
			how = "incremental"
		}
		j.SetDetail(fmt.Sprintf("reading %s (%s)", v.name, how))
		_, err = b.AddVolume(ctx, v.name, view, opts) // a Device is a repo.Source
		view.Close()
		if err != nil {
			return fmt.Errorf("backup volume %s: %w", v.name, repoError(req.Repo, err))
		}
	}
	m, err := b.Commit(ctx)
	if m == nil {
		return fmt.Errorf("backup: %w", repoError(req.Repo, err))
	}
	st := m.Stats
	j.SetDetail(fmt.Sprintf("backup %s: %d bytes read, %d new, %d stored", m.ID, st.BytesRead, st.BytesNew, st.BytesStored))
	e.log.Info("backup done", "backup", m.ID, "repository", req.Repo, "volumes", req.Volumes,
		"read", st.BytesRead, "reused", st.BytesReused, "new", st.BytesNew, "stored", st.BytesStored)
	if err != nil {
		e.log.Warn("backup committed with a warning", "backup", m.ID, "err", err)
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

// repoError tags a repository error with the engine sentinel the API maps.
func repoError(name string, err error) error {
	if err == nil {
		return nil
	}
	if name == "" {
		name = apischema.DefaultRepo
	}
	switch {
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, repo.ErrAmbiguous):
		return errorf(ErrBackupNotFound, "repository %s: %w", name, err)
	case errors.Is(err, repo.ErrInvalid):
		return errorf(ErrInvalidArgument, "repository %s: %w", name, err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return errorf(ErrRepo, "repository %s: %w", name, err)
}

// ErrBackupNotFound: no backup with that id (or prefix) in the repository.
var ErrBackupNotFound = errors.New("backup not found")
