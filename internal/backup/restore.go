package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fsx"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// KindRestore is the job kind of a restore.
const KindRestore = "restore"

// Restore starts a restore job. The target must not exist: a new sparse
// raw file (absolute path) or a new volume, which is created with the
// backed-up size and removed again if the restore fails.
func (s *Service) Restore(ctx context.Context, req apischema.RestoreRequest) (job.Info, error) {
	if (req.ToFile == "") == (req.ToVolume == "") {
		return job.Info{}, errkind.Errorf(errkind.ErrInvalidArgument, "restore backup %s: give exactly one target, a file or a new volume", req.Backup)
	}
	r, err := s.host.Repo(ctx, req.Repo)
	if err != nil {
		return job.Info{}, err
	}
	m, err := r.Load(ctx, req.Backup)
	if err != nil {
		return job.Info{}, RepoError(req.Repo, err)
	}
	vol, err := PickVolume(m, req.Volume)
	if err != nil {
		return job.Info{}, err
	}
	restore := func(ctx context.Context, j *job.Job, dst io.WriterAt) error {
		j.SetDetail(fmt.Sprintf("restoring %s of backup %s", vol.Name, m.ID))
		return RepoError(req.Repo, r.Restore(ctx, m, vol.Name, dst, repo.RestoreOptions{
			Progress: func(done, total int64) { j.SetDone(done) }}))
	}
	if req.ToFile != "" {
		return s.restoreToFile(req, vol, restore)
	}
	return s.restoreToVolume(ctx, req, vol, restore)
}

// restoreFunc restores the chosen backup volume into dst as a job.
type restoreFunc func(ctx context.Context, j *job.Job, dst io.WriterAt) error

func (s *Service) restoreToFile(req apischema.RestoreRequest, vol *repo.Volume, restore restoreFunc) (job.Info, error) {
	path := req.ToFile
	if !filepath.IsAbs(path) {
		return job.Info{}, errkind.Errorf(errkind.ErrInvalidArgument, "restore to %q: give an absolute path (the daemon writes it)", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, fs.ErrExist) {
		return job.Info{}, errkind.Errorf(errkind.ErrFileExists, "restore to %s: the file exists; remove it or pick another path", path)
	}
	if err != nil {
		return job.Info{}, fmt.Errorf("restore to %s: %w", path, err)
	}
	if err := f.Truncate(vol.Size); err != nil {
		f.Close()
		os.Remove(path)
		return job.Info{}, fmt.Errorf("restore to %s: %w", path, err)
	}
	j, err := s.host.StartJob(KindRestore, vol.Name, vol.Size, func(ctx context.Context, j *job.Job) error {
		err := restore(ctx, j, f)
		if err == nil {
			err = unix.Fdatasync(int(f.Fd()))
		}
		err = errors.Join(err, f.Close())
		if err == nil { // the new name must survive a crash too
			err = fsx.SyncDir(filepath.Dir(path))
		}
		if err != nil {
			os.Remove(path)
			return fmt.Errorf("restore to %s: %w (the partial file was removed)", path, err)
		}
		return nil
	})
	if err != nil {
		f.Close()
		os.Remove(path)
		return job.Info{}, err
	}
	return j, nil
}

func (s *Service) restoreToVolume(ctx context.Context, req apischema.RestoreRequest, vol *repo.Volume, restore restoreFunc) (job.Info, error) {
	// Created unfinished, as an import: a crash leaves it marked so.
	return s.host.FillNew(ctx, KindRestore, req.ToVolume, vol.Size, req.Datastore, func(ctx context.Context, j *job.Job, dev blockdev.Device) error {
		if err := restore(ctx, j, blockdev.WriterAt(ctx, dev)); err != nil {
			return err
		}
		return dev.Flush(ctx)
	})
}

// PickVolume returns the named volume of m, or its only one.
func PickVolume(m *repo.Manifest, name string) (*repo.Volume, error) {
	if name == "" {
		if len(m.Volumes) == 1 {
			return m.Volumes[0], nil
		}
		names := make([]string, len(m.Volumes))
		for i, v := range m.Volumes {
			names[i] = v.Name
		}
		return nil, errkind.Errorf(errkind.ErrInvalidArgument, "backup %s holds volumes %v: say which one (--source)", m.ID, names)
	}
	v, err := m.Volume(name)
	if err != nil {
		return nil, errkind.Errorf(errkind.ErrVolumeNotFound, "backup %s has no volume %s", m.ID, name)
	}
	return v, nil
}
