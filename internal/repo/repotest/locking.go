package repotest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// wantLocked checks err is a *LockedError whose holder does operation.
func wantLocked(t *testing.T, what string, err error, operation string) {
	t.Helper()
	var le *repo.LockedError
	if !errors.As(err, &le) || !errors.Is(err, repo.ErrLocked) {
		t.Errorf("%s: %v, want a *LockedError", what, err)
		return
	}
	host, _ := os.Hostname()
	if le.Holder.Operation != operation || le.Holder.PID != os.Getpid() || le.Holder.Host != host ||
		!strings.Contains(err.Error(), operation) {
		t.Errorf("%s: holder %+v (%v), want %s by pid %d on %s", what, le.Holder, err, operation, os.Getpid(), host)
	}
}

// testLocking: a running backup excludes prune and forget but not other
// backups or verify; a reader of a backup excludes only a prune that would
// delete it; a running prune excludes backups and readers.
func testLocking(t *testing.T, e *env) {
	r := e.init()
	r2 := e.open()
	ctx := t.Context()
	im := newImage(9, 512<<10)
	m0 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})

	b, err := r.NewBackup(ctx, repo.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Prune(ctx, nil)
	wantLocked(t, "prune during a backup", err, "backup")
	wantLocked(t, "forget during a backup", r2.Forget(ctx, m0.ID), "backup")
	m1 := backup(t, r2, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}}) // shared with shared
	verifyClean(t, r2)
	if _, err := b.AddVolume(ctx, "disk0", im, repo.VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	m2, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	// A reader of m0 blocks only a prune that deletes m0.
	vr, err := r.OpenVolume(ctx, m0, "disk0", repo.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Prune(ctx, []string{m0.ID})
	wantLocked(t, "prune of a backup being read", err, "serve")
	if _, err := r2.Prune(ctx, []string{m1.ID}); err != nil {
		t.Fatalf("prune of another backup while one is read: %v", err)
	}
	p := make([]byte, im.Size())
	if err := vr.ReadAt(ctx, p, 0); err != nil || !bytes.Equal(p, im.snapshot()) {
		t.Fatalf("reader after a prune of another backup: %v", err)
	}
	vr.Close()

	// A prune in progress (held inside its first delete) excludes backups,
	// readers of the backups it deletes, and other prunes.
	g := &gate{Backend: e.b, prefix: "snapshots/", entered: make(chan struct{}), release: make(chan struct{})}
	rp, err := repo.Open(ctx, g, e.password)
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	done := make(chan error, 1)
	go func() {
		_, err := rp.Prune(ctx, []string{m0.ID})
		done <- err
	}()
	<-g.entered
	_, err = r.NewBackup(ctx, repo.BackupOptions{})
	wantLocked(t, "backup during a prune", err, "prune")
	_, err = r.OpenVolume(ctx, m0, "disk0", repo.ReaderOptions{})
	wantLocked(t, "reader of a backup being pruned", err, "prune")
	_, err = r.Prune(ctx, nil)
	wantLocked(t, "second prune", err, "prune")
	close(g.release)
	if err := <-done; err != nil {
		t.Fatalf("gated prune: %v", err)
	}
	if got := restore(t, r, m2, "disk0"); !bytes.Equal(got, im.snapshot()) {
		t.Fatal("restore after the prunes differs")
	}
	if got := objects(t, e.b, "locks/"); len(got) != 0 {
		t.Errorf("locks left behind: %v", got)
	}
}

// gate blocks the first Delete under prefix until release is closed.
type gate struct {
	backend.Backend
	prefix  string
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, g.prefix) {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.entered)
			<-g.release
		}
	}
	return g.Backend.Delete(ctx, key)
}

// testConcurrentBackupPrune: backups and prunes race from two handles;
// each either runs or gets ErrLocked, and at the end every backup left
// restores to its source and verify is clean.
func testConcurrentBackupPrune(t *testing.T, e *env) {
	r1 := e.init()
	r2 := e.open()
	ctx := t.Context()
	im := newImage(17, 512<<10)
	var mu sync.Mutex // guards want
	want := map[string][]byte{}
	var backupsDone atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer backupsDone.Store(true)
		var prev *repo.Volume
		for k := range 6 {
			var dirty []blockdev.Range
			if prev != nil {
				dirty = []blockdev.Range{rng(im.write(int64(k)*ChunkSize, 4096, false))}
			}
			snap := im.snapshot()
			for { // a prune holds the lock only briefly
				m, err := tryBackup(ctx, r1, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: prev, Dirty: dirty}})
				if errors.Is(err, repo.ErrLocked) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[m.ID] = snap
				mu.Unlock()
				prev = m.Volumes[0]
				break
			}
		}
	})
	wg.Go(func() {
		// Prune (keeping the newest two) until the backups are done and a
		// prune has gone through; refusals while a backup runs are expected.
		pruned := 0
		for {
			finished := backupsDone.Load()
			ms, err := r2.List(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if len(ms) >= 3 {
				var forget []string
				for _, m := range ms[:len(ms)-2] {
					forget = append(forget, m.ID)
				}
				if _, err := r2.Prune(ctx, forget); err == nil {
					pruned++
				} else if !errors.Is(err, repo.ErrLocked) {
					t.Error(err)
					return
				}
			}
			if finished && (pruned > 0 || len(ms) < 3) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	ms, err := r1.List(ctx)
	if err != nil || len(ms) < 2 {
		t.Fatalf("List: %d backups, %v", len(ms), err)
	}
	for _, m := range ms {
		if got := restore(t, r1, m, "disk0"); !bytes.Equal(got, want[m.ID]) {
			t.Errorf("backup %s does not restore to its source", m.ID)
		}
	}
	verifyClean(t, r1)
}
