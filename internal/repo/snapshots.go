package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// encodeManifest makes the manifest object.
func (r *Repo) encodeManifest(m *Manifest) ([]byte, error) {
	body, err := encodeManifestBody(m, r.cfg.ID)
	if err != nil {
		return nil, err
	}
	return r.codec.encode(nil, magicManifest, manifestKey(m.ID), body, true, nil), nil
}

// decodeManifest opens and parses a manifest object stored under id.
func (c *codec) decodeManifest(id, repoID string, obj []byte) (*Manifest, error) {
	return c.parseManifest(id, repoID, obj, true)
}

// parseManifest is decodeManifest, without the chunk tables unless tables.
func (c *codec) parseManifest(id, repoID string, obj []byte, tables bool) (*Manifest, error) {
	body, err := c.decode(magicManifest, manifestKey(id), obj, maxMetaSize, nil)
	if err != nil {
		return nil, err
	}
	return parseManifestBody(body, id, repoID, tables)
}

// loadManifest reads backup id (exact); errors are *ManifestError.
func (r *Repo) loadManifest(ctx context.Context, id string) (*Manifest, error) {
	return r.readManifest(ctx, id, true)
}

// readManifest is loadManifest, without the chunk tables unless tables.
func (r *Repo) readManifest(ctx context.Context, id string, tables bool) (*Manifest, error) {
	obj, err := r.b.Get(ctx, manifestKey(id))
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("backup %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, &ManifestError{Backup: id, Err: err}
	}
	m, err := r.codec.parseManifest(id, r.cfg.ID, obj, tables)
	if err != nil {
		return nil, &ManifestError{Backup: id, Err: err}
	}
	return m, nil
}

// IDs lists the backup ids in the repository, sorted (oldest first).
// Objects under snapshots/ whose name is not a backup id are skipped
// (Verify reports them).
func (r *Repo) IDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.b.List(ctx, manifestPrefix, func(key string, _ int64) error {
		if id := strings.TrimPrefix(key, manifestPrefix); validBackupID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// List reads every manifest, oldest first (by time, then id). Manifests
// that cannot be read are left out and reported in the error (errors.Join
// of *ManifestError), so a non-nil error may come with the readable ones.
func (r *Repo) List(ctx context.Context) ([]*Manifest, error) { return r.list(ctx, true) }

// Summaries is List without the chunk tables: every Volume's Chunks is
// nil. Listing and retention planning need no more, and a table is 5 MiB
// per 10 GiB of disk.
func (r *Repo) Summaries(ctx context.Context) ([]*Manifest, error) { return r.list(ctx, false) }

func (r *Repo) list(ctx context.Context, tables bool) ([]*Manifest, error) {
	ids, err := r.IDs(ctx)
	if err != nil {
		return nil, err
	}
	var ms []*Manifest
	var errs []error
	for _, id := range ids {
		m, err := r.readManifest(ctx, id, tables)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // forgotten meanwhile
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			errs = append(errs, err)
		default:
			ms = append(ms, m)
		}
	}
	sortManifests(ms)
	return ms, errors.Join(errs...)
}

// sortManifests orders by time, then id (oldest first).
func sortManifests(ms []*Manifest) {
	slices.SortStableFunc(ms, func(a, b *Manifest) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Resolve turns an id or a unique id prefix into a full backup id.
// Errors: ErrNotFound, ErrAmbiguous.
func (r *Repo) Resolve(ctx context.Context, prefix string) (string, error) {
	if prefix == "" {
		return "", fmt.Errorf("empty backup id: %w", ErrNotFound)
	}
	ids, err := r.IDs(ctx)
	if err != nil {
		return "", err
	}
	var match []string
	for _, id := range ids {
		if id == prefix {
			return id, nil
		}
		if strings.HasPrefix(id, prefix) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("backup %q: %w", prefix, ErrNotFound)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("backup %q matches %s: %w", prefix, strings.Join(match, ", "), ErrAmbiguous)
}

// Load reads one backup by id or unique id prefix. Errors: ErrNotFound,
// ErrAmbiguous, *ManifestError.
func (r *Repo) Load(ctx context.Context, idOrPrefix string) (*Manifest, error) {
	id, err := r.Resolve(ctx, idOrPrefix)
	if err != nil {
		return nil, err
	}
	return r.loadManifest(ctx, id)
}

// Forget deletes backups (ids or unique prefixes) under an exclusive
// lock. Their chunks stay until Prune sweeps them.
func (r *Repo) Forget(ctx context.Context, ids ...string) error {
	full := make([]string, 0, len(ids))
	for _, p := range ids {
		id, err := r.Resolve(ctx, p)
		if err != nil {
			return fmt.Errorf("forget: %w", err)
		}
		full = append(full, id)
	}
	l, err := r.lock(ctx, lockExclusive, "forget", full)
	if err != nil {
		return fmt.Errorf("forget: %w", err)
	}
	defer l.release(ctx)
	for _, id := range full {
		if err := r.b.Delete(ctx, manifestKey(id)); err != nil {
			return fmt.Errorf("forget backup %s: %w", id, err)
		}
	}
	return l.release(ctx)
}
