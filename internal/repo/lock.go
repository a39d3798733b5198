package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// Lock kinds. The backend has no compare-and-swap, so a lock is taken by
// writing locks/<random> and then listing the others (restic's scheme): of
// two processes racing, at least one sees the other and backs off.
const (
	lockBackup    = "backup"    // shared: uploads chunks, then writes a manifest
	lockRead      = "read"      // shared: reads the listed backups (all of them when none is listed)
	lockExclusive = "exclusive" // forget and prune: deletes the listed backups, sweeps chunks
)

// LockInfo is the content of a lock object (JSON in the "XSRL" envelope,
// encrypted when the repository is).
type LockInfo struct {
	Kind      string    `json:"kind"`      // backup, read, exclusive
	Operation string    `json:"operation"` // what the holder does: backup, restore, serve, verify, prune, forget
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Time      time.Time `json:"time"`              // taken or last refreshed
	Backups   []string  `json:"backups,omitempty"` // read: backups read (none: all); exclusive: backups deleted
}

// conflicts reports whether two locks cannot be held together. Shared
// locks go together. An exclusive lock excludes every backup and every
// other exclusive lock, and the read locks of backups it deletes (a read
// of a backup it keeps is safe: sweep only removes chunks no remaining
// backup references).
func conflicts(a, b LockInfo) bool {
	if a.Kind != lockExclusive && b.Kind != lockExclusive {
		return false
	}
	if a.Kind == lockExclusive && b.Kind == lockExclusive {
		return true
	}
	x, o := a, b
	if b.Kind == lockExclusive {
		x, o = b, a
	}
	if o.Kind != lockRead || len(o.Backups) == 0 {
		return true
	}
	for _, id := range o.Backups {
		if slices.Contains(x.Backups, id) {
			return true
		}
	}
	return false
}

// stale: not refreshed for lockStale, or held by a process of this host
// that no longer exists (after a kill -9 the next run need not wait).
func (r *Repo) stale(l LockInfo, now time.Time) bool {
	if now.Sub(l.Time) > r.lockStale {
		return true
	}
	return l.Host == r.host && l.PID > 0 && l.PID != r.pid && !pidAlive(l.PID)
}

func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

func (r *Repo) encodeLock(key string, l LockInfo) ([]byte, error) {
	js, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return r.codec.encode(nil, magicLock, key, js, false, nil), nil
}

// decodeLock parses a lock object.
func (c *codec) decodeLock(key string, obj []byte) (LockInfo, error) {
	var l LockInfo
	js, err := c.decode(magicLock, key, obj, maxSmallSize, nil)
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(js, &l); err != nil {
		return l, fmt.Errorf("lock %s: %v: %w", key, err, ErrCorrupt)
	}
	if err := l.Validate(); err != nil {
		return l, fmt.Errorf("lock %s: %w", key, err)
	}
	return l, nil
}

// Validate checks a lock's fields.
func (l LockInfo) Validate() error {
	if l.Kind != lockBackup && l.Kind != lockRead && l.Kind != lockExclusive {
		return fmt.Errorf("lock kind %q: %w", l.Kind, ErrCorrupt)
	}
	if l.Time.IsZero() || l.Operation == "" {
		return fmt.Errorf("lock without time or operation: %w", ErrCorrupt)
	}
	return nil
}

// checkLocks returns a *LockedError for the first lock that conflicts with
// want (skipping self), deleting stale locks on the way.
func (r *Repo) checkLocks(ctx context.Context, want LockInfo, self string) error {
	var keys []string
	if err := r.b.List(ctx, lockPrefix, func(key string, _ int64) error {
		if key != self {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list locks: %w", err)
	}
	for _, key := range keys {
		obj, err := r.b.Get(ctx, key)
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("read lock %s: %w", key, err)
		}
		l, err := r.codec.decodeLock(key, obj)
		if err != nil {
			return &LockedError{Key: key, Stale: r.lockStale, Err: err}
		}
		if r.stale(l, time.Now()) {
			r.b.Delete(ctx, key) // best effort: the next taker retries
			continue
		}
		if conflicts(want, l) {
			return &LockedError{Key: key, Holder: l, Stale: r.lockStale}
		}
	}
	return nil
}

// heldLock is a lock this process holds, refreshed in the background.
type heldLock struct {
	r      *Repo
	key    string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex // guards info, lastOK, lost and closed
	info   LockInfo
	lastOK time.Time // last successful write of the lock object
	lost   bool      // the object vanished: someone removed it as stale
	closed bool      // release ran
}

// lock takes a lock of kind for operation over backups.
func (r *Repo) lock(ctx context.Context, kind, operation string, backups []string) (*heldLock, error) {
	now := time.Now().UTC().Round(0)
	info := LockInfo{Kind: kind, Operation: operation, Host: r.host, PID: r.pid, Time: now, Backups: backups}
	if err := r.checkLocks(ctx, info, ""); err != nil {
		return nil, err
	}
	key := lockPrefix + randomHex(12)
	obj, err := r.encodeLock(key, info)
	if err != nil {
		return nil, err
	}
	if err := r.b.Put(ctx, key, obj); err != nil {
		return nil, fmt.Errorf("write lock %s: %w", key, err)
	}
	if err := r.checkLocks(ctx, info, key); err != nil {
		r.deleteDetached(ctx, key)
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &heldLock{r: r, key: key, cancel: cancel, done: make(chan struct{}), info: info, lastOK: now}
	go l.refresh(rctx)
	return l, nil
}

// deleteDetached deletes key even when ctx is already cancelled.
func (r *Repo) deleteDetached(ctx context.Context, key string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return r.b.Delete(dctx, key)
}

func (l *heldLock) refresh(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.r.lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := l.r.b.Size(ctx, l.key); errors.Is(err, backend.ErrNotExist) {
			l.mu.Lock()
			l.lost = true
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		info := l.info
		l.mu.Unlock()
		info.Time = time.Now().UTC().Round(0)
		obj, err := l.r.encodeLock(l.key, info)
		if err == nil {
			err = l.r.b.Put(ctx, l.key, obj)
		}
		if err == nil {
			l.mu.Lock()
			l.info, l.lastOK = info, info.Time
			l.mu.Unlock()
		}
	}
}

// check returns an error wrapping ErrLockLost unless the lock is still
// held: its object exists as far as the refresher knows, and it was
// refreshed recently enough that no one may yet call it stale.
func (l *heldLock) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return fmt.Errorf("lock %s was removed by another process: %w", l.key, ErrLockLost)
	}
	margin := l.r.lockStale - l.r.lockRefresh
	if margin <= 0 {
		margin = l.r.lockStale / 2
	}
	if time.Since(l.lastOK) > margin {
		return fmt.Errorf("lock %s not refreshed since %s: %w", l.key, l.lastOK.Format(time.RFC3339), ErrLockLost)
	}
	return nil
}

// release stops the refresher and deletes the lock object. Idempotent.
func (l *heldLock) release(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	<-l.done
	if err := l.r.deleteDetached(ctx, l.key); err != nil {
		return fmt.Errorf("remove lock %s: %w", l.key, err)
	}
	return nil
}

// RemoveLocks deletes stale locks, or every lock when all is set (for an
// operator who knows no other process uses the repository). It returns
// how many it removed.
func (r *Repo) RemoveLocks(ctx context.Context, all bool) (int, error) {
	var keys []string
	if err := r.b.List(ctx, lockPrefix, func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("list locks: %w", err)
	}
	n := 0
	for _, key := range keys {
		if !all {
			obj, err := r.b.Get(ctx, key)
			if err != nil {
				continue
			}
			l, err := r.codec.decodeLock(key, obj)
			if err != nil || !r.stale(l, time.Now()) {
				continue
			}
		}
		if err := r.b.Delete(ctx, key); err != nil {
			return n, fmt.Errorf("remove lock %s: %w", key, err)
		}
		n++
	}
	return n, nil
}
