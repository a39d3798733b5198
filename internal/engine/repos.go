package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3"
)

// ErrRepoNotFound / ErrRepoExists: a backup repository name that is not
// known, or already is. ErrRepo: the repository cannot be opened or used
// (wrong password, not a repository, unreachable, locked, corrupt).
var (
	ErrRepoNotFound = errors.New("repository not found")
	ErrRepoExists   = errors.New("repository already exists")
	ErrRepo         = errors.New("repository error")
)

// AddRepo records a repository (creating it with Init) after opening it
// once, so a wrong password or endpoint is refused at once.
func (e *Engine) AddRepo(ctx context.Context, req apischema.RepoRequest) (apischema.RepoInfo, error) {
	if req.Name == "" {
		req.Name = apischema.DefaultRepo
	}
	if err := datastore.CheckName("repository", req.Name); err != nil {
		return apischema.RepoInfo{}, errorf(ErrInvalidArgument, "%v", err)
	}
	if req.PasswordFile != "" && !filepath.IsAbs(req.PasswordFile) {
		return apischema.RepoInfo{}, errorf(ErrInvalidArgument, "password file %q: give an absolute path (the daemon reads it)", req.PasswordFile)
	}
	rec := catalog.Repo{Name: req.Name, Location: req.Location, Endpoint: req.Endpoint, Insecure: req.Insecure,
		Region: req.Region, AccessKey: req.AccessKey, SecretKey: req.SecretKey, PasswordFile: req.PasswordFile, Added: now()}
	if !s3.IsURL(rec.Location) {
		if !filepath.IsAbs(rec.Location) {
			return apischema.RepoInfo{}, errorf(ErrInvalidArgument, "repository location %q: give an absolute directory or s3://BUCKET/PREFIX", rec.Location)
		}
		rec.Location = filepath.Clean(rec.Location)
	}
	e.repoMu.Lock()
	defer e.repoMu.Unlock()
	if _, ok := e.repos[req.Name]; ok {
		return apischema.RepoInfo{}, errorf(ErrRepoExists, "repository %s already exists (see `extrasphere repo list`)", req.Name)
	}
	r, err := openRepo(ctx, rec, req.Init, req.ChunkSize)
	if err != nil {
		return apischema.RepoInfo{}, err
	}
	r.SetFailpoints(e.cfg.Failpoints)
	if err := e.cat.PutRepo(rec); err != nil {
		r.Close()
		return apischema.RepoInfo{}, err
	}
	e.repos[req.Name] = &repoEntry{rec: rec, r: r}
	e.log.Info("repository added", "repository", req.Name, "location", rec.Location, "created", req.Init)
	return repoInfo(rec, r, nil), nil
}

// ListRepos describes the known repositories; one that cannot be opened
// carries its error.
func (e *Engine) ListRepos(ctx context.Context) []apischema.RepoInfo {
	e.repoMu.Lock()
	defer e.repoMu.Unlock()
	out := []apischema.RepoInfo{}
	for _, name := range sortedKeys(e.repos) {
		ent := e.repos[name]
		r, err := e.repoLocked(ctx, ent)
		out = append(out, repoInfo(ent.rec, r, err))
	}
	return out
}

// RemoveRepo forgets a repository; its data stays where it is.
func (e *Engine) RemoveRepo(ctx context.Context, name string) error {
	e.repoMu.Lock()
	defer e.repoMu.Unlock()
	ent, ok := e.repos[name]
	if !ok {
		return e.repoNotFound(name)
	}
	if err := e.cat.DeleteRepo(name); err != nil {
		return err
	}
	if ent.r != nil {
		ent.r.Close()
	}
	delete(e.repos, name)
	return nil
}

// repoEntry is one known repository, opened on first use.
type repoEntry struct {
	rec catalog.Repo
	r   *repo.Repo // nil until opened
}

// useRepo returns an open repository by name ("" = apischema.DefaultRepo).
func (e *Engine) useRepo(ctx context.Context, name string) (*repo.Repo, error) {
	if name == "" {
		name = apischema.DefaultRepo
	}
	e.repoMu.Lock()
	defer e.repoMu.Unlock()
	ent, ok := e.repos[name]
	if !ok {
		return nil, e.repoNotFound(name)
	}
	return e.repoLocked(ctx, ent)
}

func (e *Engine) repoLocked(ctx context.Context, ent *repoEntry) (*repo.Repo, error) {
	if ent.r != nil {
		return ent.r, nil
	}
	r, err := openRepo(ctx, ent.rec, false, 0)
	if err != nil {
		return nil, err
	}
	r.SetFailpoints(e.cfg.Failpoints)
	ent.r = r
	return r, nil
}

func (e *Engine) repoNotFound(name string) error {
	if name == apischema.DefaultRepo {
		return errorf(ErrRepoNotFound, "no backup repository %s: create one with `extrasphere repo init DIR` (or s3://BUCKET/PREFIX --endpoint URL)", name)
	}
	return errorf(ErrRepoNotFound, "no backup repository %s (see `extrasphere repo list`)", name)
}

// loadRepos reads the repository records at start; they open on first use.
func (e *Engine) loadRepos() error {
	recs, err := e.cat.Repos()
	if err != nil {
		return err
	}
	e.repos = map[string]*repoEntry{}
	for _, r := range recs {
		e.repos[r.Name] = &repoEntry{rec: r}
	}
	return nil
}

// closeRepos closes the open repositories (Engine.Close).
func (e *Engine) closeRepos() {
	e.repoMu.Lock()
	defer e.repoMu.Unlock()
	for _, ent := range e.repos {
		if ent.r != nil {
			ent.r.Close()
			ent.r = nil
		}
	}
}

// openRepo opens (or with create, initialises) the repository rec names.
func openRepo(ctx context.Context, rec catalog.Repo, create bool, chunkSize int) (*repo.Repo, error) {
	fail := func(err error) error {
		kind := ErrRepo
		if errors.Is(err, repo.ErrExists) {
			kind = ErrRepoExists
		}
		return errorf(kind, "repository %s at %s: %w", rec.Name, rec.Location, err)
	}
	var password []byte
	if rec.PasswordFile != "" {
		b, err := os.ReadFile(rec.PasswordFile)
		if err != nil {
			return nil, fail(fmt.Errorf("read the password file: %w", err))
		}
		password = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(password) == 0 {
			return nil, fail(fmt.Errorf("password file %s is empty", rec.PasswordFile))
		}
	}
	b, err := openBackend(ctx, rec, create)
	if err != nil {
		return nil, fail(err)
	}
	var r *repo.Repo
	if create {
		r, err = repo.Init(ctx, b, repo.InitOptions{Password: password, ChunkSize: chunkSize})
	} else {
		r, err = repo.Open(ctx, b, password)
	}
	if err != nil {
		b.Close()
		return nil, fail(err)
	}
	return r, nil
}

func openBackend(ctx context.Context, rec catalog.Repo, create bool) (backend.Backend, error) {
	if !s3.IsURL(rec.Location) {
		if create {
			return local.Create(rec.Location)
		}
		return local.Open(rec.Location)
	}
	bucket, prefix, err := s3.ParseURL(rec.Location)
	if err != nil {
		return nil, err
	}
	if rec.Endpoint == "" {
		return nil, fmt.Errorf("an s3:// repository needs --endpoint URL (for AWS: https://s3.amazonaws.com)")
	}
	cfg := s3.Config{Endpoint: rec.Endpoint, Bucket: bucket, Prefix: prefix, AccessKey: rec.AccessKey,
		SecretKey: rec.SecretKey, Region: rec.Region, Insecure: rec.Insecure}
	if create {
		if err := s3.CreateBucket(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return s3.Open(ctx, cfg)
}

func repoInfo(rec catalog.Repo, r *repo.Repo, err error) apischema.RepoInfo {
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
