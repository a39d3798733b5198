package engine

import (
	"context"
	"errors"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repos"
)

// The engine's repository errors are internal/repos's (the API maps them).
var (
	ErrRepoNotFound = repos.ErrNotFound
	ErrRepoExists   = repos.ErrExists
	ErrRepo         = repos.ErrRepo
)

// AddRepo records a repository (creating it with Init) after opening it
// once, so a wrong password or endpoint is refused at once.
func (e *Engine) AddRepo(ctx context.Context, req apischema.RepoRequest) (apischema.RepoInfo, error) {
	in, err := e.repos.Add(ctx, req)
	if errors.Is(err, repos.ErrInvalidArgument) {
		err = errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	return in, err
}

// ListRepos describes the known repositories; one that cannot be opened
// carries its error.
func (e *Engine) ListRepos(ctx context.Context) []apischema.RepoInfo { return e.repos.List(ctx) }

// RemoveRepo forgets a repository; its data stays where it is.
func (e *Engine) RemoveRepo(ctx context.Context, name string) error { return e.repos.Remove(name) }

// useRepo returns an open repository by name ("" = apischema.DefaultRepo).
func (e *Engine) useRepo(ctx context.Context, name string) (*repo.Repo, error) {
	return e.repos.Use(ctx, name)
}
