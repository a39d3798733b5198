package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/backup"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// Backups and restores are internal/backup's; the engine is its Host.

// Backup starts a backup job (backup.Service.Backup).
func (e *Engine) Backup(ctx context.Context, req apischema.BackupRequest) (job.Info, error) {
	return e.backups.Backup(ctx, req)
}

// ListBackups lists a repository's backups, oldest first.
func (e *Engine) ListBackups(ctx context.Context, repoName string) ([]apischema.BackupInfo, error) {
	return e.backups.List(ctx, repoName)
}

// VerifyBackups checks a repository (backup.Service.Verify).
func (e *Engine) VerifyBackups(ctx context.Context, repoName string, readData bool) (apischema.VerifyReport, error) {
	return e.backups.Verify(ctx, repoName, readData)
}

// PruneBackups applies a retention policy (backup.Service.Prune).
func (e *Engine) PruneBackups(ctx context.Context, req apischema.PruneRequest) (apischema.PruneReport, error) {
	return e.backups.Prune(ctx, req)
}

// Restore starts a restore job (backup.Service.Restore).
func (e *Engine) Restore(ctx context.Context, req apischema.RestoreRequest) (job.Info, error) {
	return e.backups.Restore(ctx, req)
}

// backupHost is the engine as internal/backup's Host.
type backupHost struct{ e *Engine }

var _ backup.Host = backupHost{}

func (h backupHost) Repo(ctx context.Context, name string) (*repo.Repo, error) {
	return h.e.useRepo(ctx, name)
}

func (h backupHost) Step(name string) { h.e.hit(name) }

func (h backupHost) StartJob(kind, target string, total int64, fn job.Func) (job.Info, error) {
	j, err := h.e.jobs.Start(kind, target, total, fn)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

func (h backupHost) FillNew(ctx context.Context, kind, name string, size int64, ds string, fill func(context.Context, *job.Job, blockdev.Device) error) (job.Info, error) {
	j, err := h.e.fillNew(ctx, kind, CreateOptions{Name: name, Size: size, Datastore: ds}, fill)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

func (h backupHost) Freeze(names []string, verb string) (backup.Group, error) {
	cvs, unlock, err := h.e.chain.LockVolumes(names, verb)
	if err != nil {
		return nil, err
	}
	vs := make([]*volume, len(cvs))
	for i, cv := range cvs {
		vs[i] = cv.(chainVol).v
	}
	return &frozenGroup{e: h.e, vs: vs, cvs: cvs, unlock: unlock}, nil
}

// frozenGroup is a backup.Group: volumes whose snapMu it holds.
type frozenGroup struct {
	e      *Engine
	vs     []*volume
	cvs    []chainops.Vol // the same volumes, as chainops locked them
	unlock func()
}

func (g *frozenGroup) Volumes() []backup.Volume {
	out := make([]backup.Volume, len(g.vs))
	g.e.mu.Lock()
	for i, v := range g.vs {
		out[i] = backup.Volume{Name: v.name, Size: v.files.Size}
	}
	g.e.mu.Unlock()
	return out
}

func (g *frozenGroup) Snapshot(ctx context.Context, name string, during func(string, *cbt.State) error) error {
	var in func(chainops.Vol) error
	if during != nil {
		in = func(cv chainops.Vol) error { v := cv.(chainVol).v; return cbtError(during(v.name, v.cbt)) }
	}
	_, err := g.e.chain.SnapshotGroup(ctx, g.cvs, name, in)
	return err
}

func (g *frozenGroup) View(vol, name string) (blockdev.Device, error) {
	v, err := g.member(vol)
	if err != nil {
		return nil, err
	}
	return g.e.chain.View(chainVol{g.e, v}, name)
}

func (g *frozenGroup) Drop(ctx context.Context, name string) {
	for _, cv := range g.cvs {
		if err := g.e.chain.DropSnapshot(ctx, cv, name); err != nil {
			g.e.log.Error("remove snapshot", "volume", cv.Name(), "snapshot", name, "err", err)
		}
	}
}

func (g *frozenGroup) StartJob(kind string, total int64, fn job.Func) (job.Info, error) {
	names := make([]string, len(g.vs))
	for i, v := range g.vs {
		names[i] = v.name
	}
	e := g.e
	e.mu.Lock()
	j, err := e.jobs.Start(kind, strings.Join(names, ","), total, func(ctx context.Context, j *job.Job) error {
		defer g.unlock()
		err := fn(ctx, j)
		e.mu.Lock()
		for _, v := range g.vs {
			delete(v.jobs, j.ID())
		}
		e.mu.Unlock()
		return err
	})
	if err == nil {
		for _, v := range g.vs {
			v.jobs[j.ID()] = j
		}
	}
	e.mu.Unlock()
	if err != nil {
		g.unlock()
		return job.Info{}, err
	}
	return j.Info(), nil
}

func (g *frozenGroup) member(name string) (*volume, error) {
	for _, v := range g.vs {
		if v.name == name {
			return v, nil
		}
	}
	return nil, fmt.Errorf("volume %s is not in the group", name)
}
