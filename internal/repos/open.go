package repos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3"
)

// openRepo opens (or with create, initialises) the repository rec names.
func openRepo(ctx context.Context, rec catalog.Repo, create bool, chunkSize int) (*repo.Repo, error) {
	fail := func(err error) error {
		kind := ErrRepo
		if errors.Is(err, repo.ErrExists) {
			kind = ErrExists
		}
		return errkind.Errorf(kind, "repository %s at %s: %w", rec.Name, rec.Location, err)
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
