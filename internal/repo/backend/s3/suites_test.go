package s3

import (
	"testing"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/backendtest"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3/s3test"
	"github.com/extrasphere/extrasphere/internal/repo/repotest"
)

// The shared suites run against one versitygw per suite, with a fresh
// bucket and a prefix per test, the way a real repository sits in a
// bucket "directory".
func openFresh(srv *s3test.Server) func(t *testing.T) backend.Backend {
	return func(t *testing.T) backend.Backend {
		b, err := Open(t.Context(), testConfig(srv, srv.NewBucket(t), "backups/host1"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return b
	}
}

func TestBackendConformance(t *testing.T) {
	t.Parallel()
	backendtest.Run(t, openFresh(s3test.Start(t)))
}

func TestRepository(t *testing.T) {
	t.Parallel()
	repotest.Run(t, openFresh(s3test.Start(t)))
}
