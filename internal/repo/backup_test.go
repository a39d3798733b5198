package repo

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

func TestBackupMisuse(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	ctx := t.Context()
	if _, err := r.NewBackup(ctx, BackupOptions{Group: "bad group"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad group: %v", err)
	}
	b, err := r.NewBackup(ctx, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("commit without volumes: %v", err)
	}
	src := randomData(1, 2*testChunk)
	if _, err := b.AddVolume(ctx, "v", src, VolumeOptions{Meta: map[string]string{"": "x"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty meta key: %v", err)
	}
	v, err := b.AddVolume(ctx, "v", src, VolumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddVolume(ctx, "w", src, VolumeOptions{Prev: v, Dirty: []blockdev.Range{}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("previous backup of another volume: %v", err)
	}
	if _, err := b.AddVolume(ctx, "v", src, VolumeOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("same volume twice: %v", err)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddVolume(ctx, "w", src, VolumeOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("add after commit: %v", err)
	}
	if _, err := b.Commit(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("commit twice: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// Volumes of one backup may be added concurrently; each restores.
func TestConcurrentVolumes(t *testing.T) {
	r := newTestRepo(t, nil, []byte("pw"))
	ctx := t.Context()
	b, err := r.NewBackup(ctx, BackupOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srcs := map[string]memSource{}
	for i := range 4 {
		srcs[fmt.Sprintf("disk%d", i)] = randomData(uint64(i%2), 5*testChunk+i) // pairs share most chunks
	}
	var wg sync.WaitGroup
	for name, src := range srcs {
		wg.Go(func() {
			if _, err := b.AddVolume(ctx, name, src, VolumeOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	m, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range srcs {
		dst := make(memTarget, len(src))
		if err := r.Restore(ctx, m, name, dst, RestoreOptions{}); err != nil || !bytes.Equal(dst, src) {
			t.Errorf("restore %s: %v", name, err)
		}
	}
	if st := m.Stats; st.ChunksDeduped == 0 || st.BytesRead != st.BytesZero+st.BytesDeduped+st.BytesNew {
		t.Errorf("stats %+v", st)
	}
}

// ZeroFill writes zero chunks, for a target that does not read as zeros.
func TestRestoreZeroFill(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	ctx := t.Context()
	src := randomData(3, 6*testChunk+100)
	m := backupOne(t, r, "v", src, VolumeOptions{})
	dst := make(memTarget, len(src))
	for i := range dst {
		dst[i] = 0xff
	}
	if err := r.Restore(ctx, m, "v", dst, RestoreOptions{ZeroFill: true, Workers: 2}); err != nil || !bytes.Equal(dst, src) {
		t.Fatalf("restore with ZeroFill over 0xff: %v (equal %v)", err, bytes.Equal(dst, src))
	}
	if err := r.Restore(ctx, m, "nope", dst, RestoreOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("restore of an unknown volume: %v", err)
	}
}

// A full repository (ENOSPC) fails the backup with ErrNoSpace, whether a
// pack or the index cannot be written; the repository stays valid, and
// the next backup, with space again, reuses the packs the failed one
// stored (reading their headers: no index names them).
func TestBackupNoSpace(t *testing.T) {
	for _, prefix := range []string{"packs/", "index/"} {
		t.Run(strings.TrimSuffix(prefix, "/"), func(t *testing.T) {
			f := &faulty{Backend: newLocal(t)}
			r := newTestRepo(t, f, []byte("pw"))
			ctx := t.Context()
			src := randomData(4, 16*testChunk) // 12 random chunks: 6 packs
			puts := 0
			f.setFail(func(op, key string) error {
				if op == "put" && strings.HasPrefix(key, prefix) {
					if puts++; puts > 2 || prefix == "index/" {
						return fmt.Errorf("put %s: %w: %w", key, backend.ErrNoSpace, unix.ENOSPC)
					}
				}
				return nil
			})
			// One worker: the two packs stored before the failure are not
			// cancelled by it.
			bk, err := r.NewBackup(ctx, BackupOptions{Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err = bk.AddVolume(ctx, "v", src, VolumeOptions{}); err == nil {
				_, err = bk.Commit(ctx)
			}
			bk.Close()
			if !errors.Is(err, backend.ErrNoSpace) {
				t.Fatalf("backup into a full repository: %v, want ErrNoSpace", err)
			}
			f.setFail(nil)
			if ids, _ := r.IDs(ctx); len(ids) != 0 {
				t.Fatalf("failed backup left a manifest: %v", ids)
			}
			res, err := r.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify: %v", p) })
			if err != nil || res.OrphanPacks < 2 || res.Unreferenced < 2 {
				t.Fatalf("after the failed backup: %+v, %v; want the packs stored before, unindexed", res, err)
			}
			m := backupOne(t, r, "v", src, VolumeOptions{})
			if m.Stats.ChunksDeduped != int64(res.Unreferenced) {
				t.Errorf("next backup deduplicated %d chunks, want the %d stored before", m.Stats.ChunksDeduped, res.Unreferenced)
			}
			dst := make(memTarget, len(src))
			if err := r.Restore(ctx, m, "v", dst, RestoreOptions{}); err != nil || !bytes.Equal(dst, src) {
				t.Fatalf("restore: %v", err)
			}
			if res, err := r.Verify(ctx, VerifyOptions{}, func(p error) { t.Errorf("verify: %v", p) }); err != nil ||
				res.OrphanPacks != 0 || res.Unreferenced != 0 {
				t.Fatalf("after the next backup: %+v, %v; want every pack indexed and used", res, err)
			}
		})
	}
	// The manifest itself cannot be written: no backup, and a clean repository.
	f := &faulty{Backend: newLocal(t)}
	r := newTestRepo(t, f, []byte("pw"))
	ctx := t.Context()
	f.setFail(func(op, key string) error {
		if op == "put" && strings.HasPrefix(key, "snapshots/") {
			return backend.ErrNoSpace
		}
		return nil
	})
	if _, err := tryBackupOne(ctx, r, "v", randomData(5, 2*testChunk), VolumeOptions{}); !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("manifest write on a full repository: %v", err)
	}
	f.setFail(nil)
	if ids, _ := r.IDs(ctx); len(ids) != 0 {
		t.Fatalf("backups: %v, want none", ids)
	}
	if _, err := r.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify: %v", p) }); err != nil {
		t.Fatal(err)
	}
}

// Prune stopped at any step (here: each deletion failing in turn, as a
// crash would stop it) leaves a repository whose backups all restore; the
// next prune finishes the job.
func TestPruneInterrupted(t *testing.T) {
	f := &faulty{Backend: newLocal(t)}
	r := newTestRepo(t, f, nil)
	ctx := t.Context()
	var ms []*Manifest
	var srcs []memSource
	for i := range 4 {
		src := randomData(uint64(10+i), 4*testChunk)
		srcs = append(srcs, src)
		ms = append(ms, backupOne(t, r, "v", src, VolumeOptions{}))
	}
	forget := []string{ms[0].ID, ms[1].ID}
	for step := 0; ; step++ {
		deletes := 0
		f.setFail(func(op, key string) error {
			if op == "delete" && !strings.HasPrefix(key, "locks/") {
				if deletes++; deletes > step {
					return errors.New("crash")
				}
			}
			return nil
		})
		_, err := r.Prune(ctx, forget)
		f.setFail(nil)
		for i, m := range ms[2:] {
			dst := make(memTarget, len(srcs[i+2]))
			if err := r.Restore(ctx, m, "v", dst, RestoreOptions{}); err != nil || !bytes.Equal(dst, srcs[i+2]) {
				t.Fatalf("step %d: kept backup %s does not restore: %v", step, m.ID, err)
			}
		}
		if _, err := r.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("step %d: verify: %v", step, p) }); err != nil {
			t.Fatal(err)
		}
		if err == nil {
			break
		}
		if step > 100 {
			t.Fatal("prune never completes")
		}
	}
	res, err := r.Verify(ctx, VerifyOptions{}, func(p error) { t.Error(p) })
	if err != nil || res.Unreferenced != 0 || res.Backups != 2 {
		t.Fatalf("after the prunes: %+v, %v", res, err)
	}
}
