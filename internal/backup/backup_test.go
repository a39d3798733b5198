package backup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
)

// The engine is the Host in production, and the engine's tests run every
// backup and restore through it. These tests hold the package to its side
// of the Host contract with a host whose group can be made to fail: the
// snapshot is dropped whatever happens, a failed backup commits nothing,
// and the group is unlocked when the job ends.

// faultHost is a Host over in-memory volumes.
type faultHost struct {
	t    *testing.T
	r    *repo.Repo
	jobs *job.Registry
	vols map[string]*memdev.Device

	mu       sync.Mutex
	viewErr  error    // View fails with it
	snaps    []string // snapshots taken and not dropped
	unlocked int
}

func newFaultHost(t *testing.T) *faultHost {
	be, err := local.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), be, repo.InitOptions{ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	h := &faultHost{t: t, r: r, jobs: job.NewRegistry(job.Options{}), vols: map[string]*memdev.Device{}}
	t.Cleanup(h.jobs.Close)
	return h
}

func (h *faultHost) Repo(ctx context.Context, name string) (*repo.Repo, error) { return h.r, nil }
func (h *faultHost) Step(string)                                               {}

func (h *faultHost) StartJob(kind, target string, total int64, fn job.Func) (job.Info, error) {
	j, err := h.jobs.Start(kind, target, total, fn)
	if err != nil {
		return job.Info{}, err
	}
	return j.Info(), nil
}

func (h *faultHost) FillNew(ctx context.Context, kind, name string, size int64, ds string, fill func(context.Context, *job.Job, blockdev.Device) error) (job.Info, error) {
	if _, ok := h.vols[name]; ok {
		return job.Info{}, errkind.Errorf(errkind.ErrVolumeExists, "volume %s exists", name)
	}
	d := memdev.New(size, false)
	h.vols[name] = d
	return h.StartJob(kind, name, size, func(ctx context.Context, j *job.Job) error { return fill(ctx, j, d) })
}

func (h *faultHost) Freeze(names []string, verb string) (Group, error) {
	g := &faultGroup{h: h}
	for _, n := range names {
		d, ok := h.vols[n]
		if !ok {
			return nil, errkind.Errorf(errkind.ErrVolumeNotFound, "no volume %s", n)
		}
		g.vols = append(g.vols, Volume{Name: n, Size: d.Size()})
	}
	return g, nil
}

type faultGroup struct {
	h    *faultHost
	vols []Volume
}

func (g *faultGroup) Volumes() []Volume { return g.vols }

func (g *faultGroup) Snapshot(ctx context.Context, name string, during func(string, *cbt.State) error) error {
	g.h.mu.Lock()
	g.h.snaps = append(g.h.snaps, name)
	g.h.mu.Unlock()
	return nil // no CBT state here: every backup is full
}

func (g *faultGroup) View(vol, name string) (blockdev.Device, error) {
	g.h.mu.Lock()
	defer g.h.mu.Unlock()
	if g.h.viewErr != nil {
		return nil, g.h.viewErr
	}
	return nopClose{g.h.vols[vol]}, nil
}

func (g *faultGroup) Drop(ctx context.Context, name string) {
	g.h.mu.Lock()
	defer g.h.mu.Unlock()
	for i, s := range g.h.snaps {
		if s == name {
			g.h.snaps = append(g.h.snaps[:i], g.h.snaps[i+1:]...)
			return
		}
	}
	g.h.t.Errorf("dropped snapshot %s, which was not taken", name)
}

func (g *faultGroup) StartJob(kind string, total int64, fn job.Func) (job.Info, error) {
	return g.h.StartJob(kind, "group", total, func(ctx context.Context, j *job.Job) error {
		defer func() { g.h.mu.Lock(); g.h.unlocked++; g.h.mu.Unlock() }()
		return fn(ctx, j)
	})
}

type nopClose struct{ blockdev.Device }

func (nopClose) Close() error { return nil }

func (h *faultHost) wait(t *testing.T, ji job.Info) job.Info {
	t.Helper()
	fin, err := h.jobs.Wait(t.Context(), ji.ID)
	if err != nil {
		t.Fatal(err)
	}
	return fin
}

func TestBackupRestoreThroughHost(t *testing.T) {
	h := newFaultHost(t)
	s := New(h, nil)
	d := memdev.New(1<<20, false)
	want := bytes.Repeat([]byte("extrasphere!"), 4096)
	if err := d.WriteAt(t.Context(), want, 4096, 0); err != nil {
		t.Fatal(err)
	}
	h.vols["v"] = d
	ji, err := s.Backup(t.Context(), apischema.BackupRequest{Volumes: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	if fin := h.wait(t, ji); fin.Error != "" {
		t.Fatalf("backup: %s", fin.Error)
	}
	if len(h.snaps) != 0 || h.unlocked != 1 {
		t.Fatalf("after the backup: snapshots left %v, group unlocked %d times, want none and once", h.snaps, h.unlocked)
	}
	bs, err := s.List(t.Context(), "")
	if err != nil || len(bs) != 1 {
		t.Fatalf("list: %v %v", bs, err)
	}

	path := filepath.Join(t.TempDir(), "v.raw")
	ji, err = s.Restore(t.Context(), apischema.RestoreRequest{Backup: bs[0].ID, ToFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if fin := h.wait(t, ji); fin.Error != "" {
		t.Fatalf("restore to a file: %s", fin.Error)
	}
	got, err := os.ReadFile(path)
	if err != nil || len(got) != 1<<20 || !bytes.Equal(got[4096:4096+len(want)], want) {
		t.Fatalf("restored file: %d bytes, %v; content differs", len(got), err)
	}

	ji, err = s.Restore(t.Context(), apischema.RestoreRequest{Backup: bs[0].ID, ToVolume: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if fin := h.wait(t, ji); fin.Error != "" {
		t.Fatalf("restore to a volume: %s", fin.Error)
	}
	buf := make([]byte, len(want))
	if err := h.vols["w"].ReadAt(t.Context(), buf, 4096); err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("restored volume differs (%v)", err)
	}
}

// A backup whose read fails commits no backup, and its snapshot is dropped
// and its group unlocked all the same.
func TestBackupFailureDropsSnapshot(t *testing.T) {
	h := newFaultHost(t)
	s := New(h, nil)
	h.vols["v"] = memdev.New(1<<20, false)
	h.viewErr = errors.New("injected: the snapshot cannot be opened")
	ji, err := s.Backup(t.Context(), apischema.BackupRequest{Volumes: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	fin := h.wait(t, ji)
	if fin.Error == "" {
		t.Fatal("a backup whose snapshot cannot be read succeeded")
	}
	if len(h.snaps) != 0 || h.unlocked != 1 {
		t.Errorf("after the failed backup: snapshots left %v, group unlocked %d times, want none and once", h.snaps, h.unlocked)
	}
	if bs, err := s.List(t.Context(), ""); err != nil || len(bs) != 0 {
		t.Errorf("a failed backup left %d backups (%v)", len(bs), err)
	}
}

func TestPickVolume(t *testing.T) {
	m := &repo.Manifest{ID: "b1", Volumes: []*repo.Volume{{Name: "a"}, {Name: "b"}}}
	if _, err := PickVolume(m, ""); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("two volumes, none named: %v", err)
	}
	if v, err := PickVolume(m, "b"); err != nil || v.Name != "b" {
		t.Errorf("named b: %v %v", v, err)
	}
	if _, err := PickVolume(m, "c"); !errors.Is(err, errkind.ErrVolumeNotFound) {
		t.Errorf("named c: %v", err)
	}
	one := &repo.Manifest{ID: "b2", Volumes: []*repo.Volume{{Name: "only"}}}
	if v, err := PickVolume(one, ""); err != nil || v.Name != "only" {
		t.Errorf("the only volume: %v %v", v, err)
	}
}
