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
// concurrent use.
type Registry struct {
	cat *catalog.Catalog
	log *slog.Logger
	fp  *failpoint.Set // given to every repository opened; nil in production
	now func() time.Time
	mu  sync.Mutex // guards m, and opening a repository
	m   map[string]*entry
}

// entry is one known repository, opened on first use.
type entry struct {
	rec catalog.Repo
	r   *repo.Repo // nil until opened
}

// Open loads the catalog's repository records; they open on first use.
func Open(cat *catalog.Catalog, log *slog.Logger, fp *failpoint.Set, now func() time.Time) (*Registry, error) {
	recs, err := cat.Repos()
	if err != nil {
		return nil, err
	}
	g := &Registry{cat: cat, log: log, fp: fp, now: now, m: map[string]*entry{}}
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
	defer g.mu.Unlock()
	if _, ok := g.m[req.Name]; ok {
		return apischema.RepoInfo{}, errkind.Errorf(ErrExists, "repository %s already exists (see `extrasphere repo list`)", req.Name)
	}
	r, err := openRepo(ctx, rec, req.Init, req.ChunkSize)
	if err != nil {
		return apischema.RepoInfo{}, err
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
	defer g.mu.Unlock()
	names := make([]string, 0, len(g.m))
	for name := range g.m {
		names = append(names, name)
	}
	slices.Sort(names)
	out := []apischema.RepoInfo{}
	for _, name := range names {
		ent := g.m[name]
		r, err := g.openLocked(ctx, ent)
		out = append(out, info(ent.rec, r, err))
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
	g.mu.Lock()
	defer g.mu.Unlock()
	ent, ok := g.m[name]
	if !ok {
		return nil, notFound(name)
	}
	return g.openLocked(ctx, ent)
}

// Close closes the open repositories. Records stay known: a later Use
// opens them again.
func (g *Registry) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ent := range g.m {
		if ent.r != nil {
			ent.r.Close()
			ent.r = nil
		}
	}
}

func (g *Registry) openLocked(ctx context.Context, ent *entry) (*repo.Repo, error) {
	if ent.r != nil {
		return ent.r, nil
	}
	r, err := openRepo(ctx, ent.rec, false, 0)
	if err != nil {
		return nil, err
	}
	r.SetFailpoints(g.fp)
	ent.r = r
	return r, nil
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
