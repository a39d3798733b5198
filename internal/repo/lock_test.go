package repo

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestConflicts(t *testing.T) {
	bk := LockInfo{Kind: lockBackup}
	readAll := LockInfo{Kind: lockRead}
	readA := LockInfo{Kind: lockRead, Backups: []string{"a"}}
	exA := LockInfo{Kind: lockExclusive, Backups: []string{"a"}}
	exB := LockInfo{Kind: lockExclusive, Backups: []string{"b"}}
	exNone := LockInfo{Kind: lockExclusive}
	tests := []struct {
		name string
		a, b LockInfo
		want bool
	}{
		{"BackupBackup", bk, bk, false},
		{"BackupRead", bk, readA, false},
		{"ReadRead", readAll, readA, false},
		{"ExclusiveBackup", exNone, bk, true},
		{"ExclusiveExclusive", exA, exB, true},
		{"ExclusiveReadAll", exNone, readAll, true},
		{"ExclusiveReadSame", exA, readA, true},
		{"ExclusiveReadOther", exB, readA, false},
	}
	for _, tc := range tests {
		if got := conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: conflicts = %v, want %v", tc.name, got, tc.want)
		}
		if got := conflicts(tc.b, tc.a); got != tc.want {
			t.Errorf("%s (reversed): conflicts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// putLock writes a lock object as another process would.
func putLock(t *testing.T, r *Repo, key string, l LockInfo) {
	t.Helper()
	obj, err := r.encodeLock(key, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.b.Put(t.Context(), key, obj); err != nil {
		t.Fatal(err)
	}
}

func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// Stale locks (too old, or of a dead process on this host) are removed by
// the next taker; live ones are not; unreadable ones block, named.
func TestStaleLocks(t *testing.T) {
	r := newTestRepo(t, nil, []byte("pw"))
	ctx := t.Context()
	now := time.Now().UTC()
	putLock(t, r, "locks/old", LockInfo{Kind: lockExclusive, Operation: "prune", Host: "elsewhere", PID: 1, Time: now.Add(-time.Hour)})
	putLock(t, r, "locks/dead", LockInfo{Kind: lockExclusive, Operation: "prune", Host: r.host, PID: deadPID(t), Time: now})
	m := backupOne(t, r, "v", randomData(1, 3*testChunk), VolumeOptions{})
	for _, k := range []string{"locks/old", "locks/dead"} {
		if _, err := r.b.Size(ctx, k); err == nil {
			t.Errorf("stale lock %s not removed", k)
		}
	}
	// A live process elsewhere: not stale, blocks prune, named.
	putLock(t, r, "locks/live", LockInfo{Kind: lockBackup, Operation: "backup", Host: "other-host", PID: 4242, Time: now})
	_, err := r.Prune(ctx, nil)
	var le *LockedError
	if !errors.As(err, &le) || le.Key != "locks/live" || le.Holder.Host != "other-host" || le.Holder.PID != 4242 {
		t.Fatalf("prune against a live backup lock: %v", err)
	}
	if n, err := r.RemoveLocks(ctx, false); err != nil || n != 0 {
		t.Fatalf("RemoveLocks(stale) removed %d live locks: %v", n, err)
	}
	// Unreadable lock: blocks, named with the reason.
	if err := r.b.Put(ctx, "locks/garbage", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	_, err = r.OpenVolume(ctx, m, "v", ReaderOptions{})
	if !errors.As(err, &le) || le.Key != "locks/garbage" || le.Err == nil {
		t.Fatalf("unreadable lock: %v", err)
	}
	if n, err := r.RemoveLocks(ctx, true); err != nil || n != 2 {
		t.Fatalf("RemoveLocks(all) = %d, %v; want 2", n, err)
	}
	if _, err := r.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// A lock removed by someone else is noticed by the refresher; a backup
// under it refuses to commit (ErrLockLost), and so does one whose refresh
// is overdue.
func TestLockLost(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	r.lockRefresh = 5 * time.Millisecond
	ctx := t.Context()
	b, err := r.NewBackup(ctx, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.AddVolume(ctx, "v", randomData(1, testChunk), VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	// Delete until the refresher notices: a refresh that checked just
	// before a delete writes the lock again (no compare-and-swap).
	deadline := time.Now().Add(30 * time.Second)
	for b.lock.check() == nil && time.Now().Before(deadline) {
		if err := r.b.Delete(ctx, b.lock.key); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := b.Commit(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Commit after the lock was removed: %v, want ErrLockLost", err)
	}
	if ids, _ := r.IDs(ctx); len(ids) != 0 {
		t.Fatalf("manifest written without a lock: %v", ids)
	}

	r2 := newTestRepo(t, nil, nil)
	b2, err := r2.NewBackup(ctx, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if _, err := b2.AddVolume(ctx, "v", randomData(1, testChunk), VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	b2.lock.mu.Lock()
	b2.lock.lastOK = time.Now().Add(-r2.lockStale)
	b2.lock.mu.Unlock()
	if _, err := b2.Commit(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Commit with an overdue refresh: %v, want ErrLockLost", err)
	}
}

// The refresher rewrites the lock's time, so a long operation's lock does
// not go stale.
func TestLockRefresh(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	r.lockRefresh = 5 * time.Millisecond
	ctx := t.Context()
	l, err := r.lock(ctx, lockBackup, "backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.release(ctx)
	first := readLock(t, r, l.key).Time
	deadline := time.Now().Add(30 * time.Second)
	for readLock(t, r, l.key).Time.Equal(first) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := readLock(t, r, l.key).Time; !got.After(first) {
		t.Fatalf("lock time %v not refreshed past %v", got, first)
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Size(ctx, l.key); err == nil {
		t.Fatal("released lock still stored")
	}
}

func readLock(t *testing.T, r *Repo, key string) LockInfo {
	t.Helper()
	obj, err := r.b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.codec.decodeLock(key, obj)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPIDAlive(t *testing.T) {
	if !pidAlive(os.Getpid()) || pidAlive(deadPID(t)) {
		t.Fatal("pidAlive wrong")
	}
}
