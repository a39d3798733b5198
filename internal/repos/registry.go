package repos

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3"
)

// Errors. Each one returned wraps one of them (errors.Is) with a message
// complete on its own.
var (
	// ErrNotFound: no repository of that name.
	ErrNotFound = errors.New("repository not found")
	// ErrExists: the name is taken, or Init found a repository there.
	ErrExists = errors.New("repository already exists")
	// ErrRepo: the repository cannot be opened or used (wrong password,
	// not a repository, unreachable, locked, corrupt).
	ErrRepo = errors.New("repository error")
	// ErrInvalidArgument: a bad name, location or password file path.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Registry is the set of known repositories. Its methods are safe for
// concurrent use. A repository opens (and Add creates one) outside the
// registry's lock: an S3 repository that does not answer takes up to its
// backend's timeout, and meanwhile the other repositories stay usable and
// a caller waiting for the same one can give up (its ctx).
type Registry struct {
	cat *catalog.Catalog
	log *slog.Logger
	fp  *failpoint.Set // given to every repository opened; nil in production
	now func() time.Time

	mu     sync.Mutex          // guards m, adding, gen and every entry's r and opening
	m      map[string]*entry   // the known repositories
	adding map[string]struct{} // names Add is creating or checking, not yet known
	gen    uint64              // counts Close calls: an open that ran across one is not kept
}

// entry is one known repository, opened on first use.
type entry struct {
	rec     catalog.Repo
	r       *repo.Repo // nil until opened
	opening *attempt   // the open running now, or nil
}

// attempt is one open of a repository; done is closed when it ended, and
// err then says how (nil: opened, and entry.r set unless the entry was
// removed or the registry closed meanwhile). gaveUp: it failed because its
// caller's ctx ended, which says nothing of the repository.
type attempt struct {
	done   chan struct{}
	err    error
	gaveUp bool
}

// Open loads the catalog's repository records; they open on first use.
func Open(cat *catalog.Catalog, log *slog.Logger, fp *failpoint.Set, now func() time.Time) (*Registry, error) {
	recs, err := cat.Repos()
	if err != nil {
		return nil, err
	}
	g := &Registry{cat: cat, log: log, fp: fp, now: now, m: map[string]*entry{}, adding: map[string]struct{}{}}
	for _, r := range recs {
		g.m[r.Name] = &entry{rec: r}
	}
	return g, nil
}

// Add records a repository (creating it first with req.Init) after
// opening it once, so a wrong password or endpoint is refused at once.
func (g *Registry) Add(ctx context.Context, req apischema.RepoRequest) (apischema.RepoInfo, error) {
	if req.Name == "" {
		req.Name = apischema.DefaultRepo
	}
	if err := datastore.CheckName("repository", req.Name); err != nil {
		return apischema.RepoInfo{}, errkind.Errorf(ErrInvalidArgument, "%v", err)
	}
	if req.PasswordFile != "" && !filepath.IsAbs(req.PasswordFile) {
		return apischema.RepoInfo{}, errkind.Errorf(ErrInvalidArgument, "password file %q: give an absolute path (the daemon reads it)", req.PasswordFile)
	}
	rec := catalog.Repo{Name: req.Name, Location: req.Location, Endpoint: req.Endpoint, Insecure: req.Insecure,
		Region: req.Region, AccessKey: req.AccessKey, SecretKey: req.SecretKey, PasswordFile: req.PasswordFile,
		Added: g.now()}
	if !s3.IsURL(rec.Location) {
		if !filepath.IsAbs(rec.Location) {
			return apischema.RepoInfo{}, errkind.Errorf(ErrInvalidArgument, "repository location %q: give an absolute directory or s3://BUCKET/PREFIX", rec.Location)
		}
		rec.Location = filepath.Clean(rec.Location)
	}
	g.mu.Lock()
	_, known := g.m[req.Name]
	_, busy := g.adding[req.Name]
	if known {
		g.mu.Unlock()
		return apischema.RepoInfo{}, errkind.Errorf(ErrExists, "repository %s already exists (see `extrasphere repo list`)", req.Name)
	}
	if busy {
		g.mu.Unlock()
		return apischema.RepoInfo{}, errkind.Errorf(ErrExists, "repository %s is being added by another request; see `extrasphere repo list` when it is done", req.Name)
	}
	g.adding[req.Name] = struct{}{}
	gen := g.gen
	g.mu.Unlock()

	r, err := openRepo(ctx, rec, req.Init, req.ChunkSize)
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.adding, req.Name)
	if err != nil {
		return apischema.RepoInfo{}, err
	}
	if g.gen != gen {
		r.Close()
		return apischema.RepoInfo{}, errkind.Errorf(ErrRepo, "repository %s: the daemon is stopping; add it again", req.Name)
	}
	r.SetFailpoints(g.fp)
	if err := g.cat.PutRepo(rec); err != nil {
		r.Close()
		return apischema.RepoInfo{}, err
	}
	g.m[req.Name] = &entry{rec: rec, r: r}
	g.log.Info("repository added", "repository", req.Name, "location", rec.Location, "created", req.Init)
	return info(rec, r, nil), nil
}

// List describes the known repositories, by name; one that cannot be
// opened carries its error.
func (g *Registry) List(ctx context.Context) []apischema.RepoInfo {
	g.mu.Lock()
	names := make([]string, 0, len(g.m))
	for name := range g.m {
		names = append(names, name)
	}
	g.mu.Unlock()
	slices.Sort(names)
	out := []apischema.RepoInfo{}
	for _, name := range names {
		r, rec, err := g.open(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		out = append(out, info(rec, r, err))
	}
	return out
}

// Remove forgets a repository; its data stays where it is.
func (g *Registry) Remove(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ent, ok := g.m[name]
	if !ok {
		return notFound(name)
	}
	if err := g.cat.DeleteRepo(name); err != nil {
		return err
	}
	if ent.r != nil {
		ent.r.Close()
	}
	delete(g.m, name)
	return nil
}

// Use returns the open repository name names ("" = apischema.DefaultRepo),
// opening it if needed.
func (g *Registry) Use(ctx context.Context, name string) (*repo.Repo, error) {
	if name == "" {
		name = apischema.DefaultRepo
	}
	r, _, err := g.open(ctx, name)
	return r, err
}

// Close closes the open repositories. Records stay known: a later Use
// opens them again.
func (g *Registry) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen++
	for _, ent := range g.m {
		if ent.r != nil {
			ent.r.Close()
			ent.r = nil
		}
	}
}

// open returns the repository name names, opened, and its record. One
// open runs at a time per repository, without g.mu; other callers wait for
// its result, or for their ctx. A waiter whose opener gave up (its ctx
// ended) tries again itself.
func (g *Registry) open(ctx context.Context, name string) (*repo.Repo, catalog.Repo, error) {
	for {
		g.mu.Lock()
		ent, ok := g.m[name]
		if !ok {
			g.mu.Unlock()
			return nil, catalog.Repo{}, notFound(name)
		}
		rec := ent.rec
		if ent.r != nil {
			r := ent.r
			g.mu.Unlock()
			return r, rec, nil
		}
		if a := ent.opening; a != nil {
			g.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
				return nil, rec, errkind.Errorf(ErrRepo, "repository %s: gave up waiting for it to open: %w", name, ctx.Err())
			}
			if a.err != nil && !a.gaveUp {
				return nil, rec, a.err
			}
			continue // opened (and kept, unless removed or closed meanwhile), or its opener gave up
		}
		a := &attempt{done: make(chan struct{})}
		ent.opening = a
		gen := g.gen
		g.mu.Unlock()

		r, err := openRepo(ctx, rec, false, 0)
		g.mu.Lock()
		ent.opening = nil
		switch {
		case err != nil:
		case g.m[name] != ent:
			r.Close()
			r, err = nil, notFound(name)
		case g.gen != gen:
			r.Close()
			r, err = nil, errkind.Errorf(ErrRepo, "repository %s: closed while it opened (the daemon is stopping)", name)
		default:
			r.SetFailpoints(g.fp)
			ent.r = r
		}
		a.err, a.gaveUp = err, err != nil && ctx.Err() != nil
		close(a.done)
		g.mu.Unlock()
		return r, rec, err
	}
}

func notFound(name string) error {
	if name == apischema.DefaultRepo {
		return errkind.Errorf(ErrNotFound, "no backup repository %s: create one with `extrasphere repo init DIR` (or s3://BUCKET/PREFIX --endpoint URL)", name)
	}
	return errkind.Errorf(ErrNotFound, "no backup repository %s (see `extrasphere repo list`)", name)
}

func info(rec catalog.Repo, r *repo.Repo, err error) apischema.RepoInfo {
	in := apischema.RepoInfo{Name: rec.Name, Location: rec.Location, Endpoint: rec.Endpoint}
	if r != nil {
		c := r.Config()
		in.ID, in.Encrypted, in.ChunkSize = c.ID, r.Encrypted(), c.ChunkSize
	}
	if err != nil {
		in.Error = err.Error()
	}
	return in
}
