package repotest

import (
	"bytes"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// testPrune: a policy keeps some backups per group; prune (repacking
// every pack with garbage) deletes the others and their chunks and an
// abandoned backup's; every kept backup still restores; verify is clean
// with no garbage left.
func testPrune(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	want := map[string][]byte{}
	series := func(group string, seed uint64, days int) {
		im := newImage(seed, 1<<20)
		var prev *repo.Volume
		for d := range days {
			var dirty []blockdev.Range
			if prev != nil {
				dirty = []blockdev.Range{rng(im.write(int64(d*2)*ChunkSize, 8192, false))}
			}
			m := backup(t, r, repo.BackupOptions{Group: group, Time: base.AddDate(0, 0, d)},
				vol{"disk0", im, repo.VolumeOptions{Prev: prev, Dirty: dirty}})
			want[m.ID] = im.snapshot()
			prev = m.Volumes[0]
		}
	}
	series("vm1", 11, 6)
	series("vm2", 12, 2)
	// An abandoned backup: its chunks are garbage.
	b, err := r.NewBackup(ctx, repo.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddVolume(ctx, "junk", newImage(13, 1<<20), repo.VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	res, problems := verify(t, r, false)
	if len(problems) != 0 || res.Unreferenced == 0 {
		t.Fatalf("before prune: problems %v, unreferenced %d (want > 0)", problems, res.Unreferenced)
	}

	ms, err := r.List(ctx)
	if err != nil || len(ms) != 8 {
		t.Fatalf("List: %d backups, %v", len(ms), err)
	}
	plan := repo.PlanPrune(ms, repo.Policy{KeepLast: 2}, base.AddDate(0, 0, 7))
	if len(plan.Keep) != 4 || len(plan.Forget) != 4 {
		t.Fatalf("plan keeps %d and forgets %d, want 4 and 4", len(plan.Keep), len(plan.Forget))
	}
	st, err := r.PruneWith(ctx, plan.ForgetIDs(), repo.PruneOptions{RepackAll: true})
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if st.BackupsDeleted != 4 || st.BackupsKept != 4 || st.ChunksDeleted == 0 || st.PacksDeleted == 0 {
		t.Fatalf("prune stats %+v", st)
	}
	for _, m := range plan.Keep {
		if got := restore(t, r, m, "disk0"); !bytes.Equal(got, want[m.ID]) {
			t.Errorf("kept backup %s (%s) no longer restores identically", m.ID, m.Group)
		}
	}
	for _, m := range plan.Forget {
		if _, err := r.Load(ctx, m.ID); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("forgotten backup %s: Load %v, want ErrNotFound", m.ID, err)
		}
	}
	if res := verifyClean(t, r); res.Unreferenced != 0 || res.Backups != 4 || res.OrphanPacks != 0 || res.Chunks != st.ChunksKept {
		t.Errorf("after prune: %+v (prune %+v), want 4 backups and no garbage", res, st)
	}
	// Pruning again is a no-op; forgetting ids already gone is fine.
	objs := objects(t, e.b, "")
	st, err = r.PruneWith(ctx, plan.ForgetIDs(), repo.PruneOptions{RepackAll: true})
	if err != nil || st.ChunksDeleted != 0 || st.BackupsDeleted != 0 || st.PacksDeleted != 0 || st.IndexWritten != 0 {
		t.Fatalf("second prune: %+v, %v", st, err)
	}
	if got := objects(t, e.b, ""); !maps.Equal(got, objs) {
		t.Errorf("second prune changed the objects: %d, then %d", len(objs), len(got))
	}
	if _, err := r.Prune(ctx, []string{"not-an-id"}); !errors.Is(err, repo.ErrInvalid) {
		t.Errorf("Prune of a malformed id: %v, want ErrInvalid", err)
	}
	// Forget by prefix, then prune sweeps what only it used.
	if err := r.Forget(ctx, plan.Keep[0].ID[:20]); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if err := r.Forget(ctx, "2099"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Forget of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := r.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range plan.Keep[1:] {
		if got := restore(t, r, m, "disk0"); !bytes.Equal(got, want[m.ID]) {
			t.Errorf("backup %s no longer restores identically", m.ID)
		}
	}
	verifyClean(t, r)
}
