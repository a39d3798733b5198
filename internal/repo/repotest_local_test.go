package repo_test

import (
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
	"github.com/extrasphere/extrasphere/internal/repo/repotest"
)

// TestRepoLocal runs the repository suite on the local backend.
func TestRepoLocal(t *testing.T) {
	repotest.Run(t, func(t *testing.T) backend.Backend {
		b, err := local.Create(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
