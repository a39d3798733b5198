package repo

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
)

const testChunk = 64 << 10

// testPack holds two random chunks: small data makes several packs.
const testPack = 2 * testChunk

var testKDF = KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

func newLocal(t *testing.T) *local.Backend {
	t.Helper()
	b, err := local.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestRepo makes a repository on b (a new local one when nil).
func newTestRepo(t *testing.T, b backend.Backend, password []byte) *Repo {
	t.Helper()
	if b == nil {
		b = newLocal(t)
	}
	r, err := Init(t.Context(), b, InitOptions{Password: password, ChunkSize: testChunk, PackSize: testPack, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// memSource is a Source over a byte slice.
type memSource []byte

func (m memSource) Size() int64 { return int64(len(m)) }
func (m memSource) ReadAt(_ context.Context, p []byte, off int64) error {
	copy(p, m[off:])
	return nil
}

// randomData makes n bytes: chunk i is zero when i%4 == 1, random otherwise.
func randomData(seed uint64, n int) memSource {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, n)
	for c := 0; c*testChunk < n; c++ {
		if c%4 == 1 {
			continue
		}
		q := p[c*testChunk : min((c+1)*testChunk, n)]
		i := 0
		for ; i+8 <= len(q); i += 8 {
			binary.LittleEndian.PutUint64(q[i:], r.Uint64())
		}
		for ; i < len(q); i++ {
			q[i] = byte(r.Uint32())
		}
	}
	return p
}

func backupOne(t *testing.T, r *Repo, name string, src Source, opts VolumeOptions) *Manifest {
	t.Helper()
	m, err := tryBackupOne(t.Context(), r, name, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tryBackupOne(ctx context.Context, r *Repo, name string, src Source, opts VolumeOptions) (*Manifest, error) {
	b, err := r.NewBackup(ctx, BackupOptions{})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if _, err := b.AddVolume(ctx, name, src, opts); err != nil {
		return nil, err
	}
	return b.Commit(ctx)
}

// memTarget is an io.WriterAt over a byte slice.
type memTarget []byte

func (m memTarget) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// faulty wraps a backend and fails chosen operations.
type faulty struct {
	backend.Backend
	mu   sync.Mutex // guards fail
	fail func(op, key string) error
}

func (f *faulty) check(op, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		return nil
	}
	return f.fail(op, key)
}

func (f *faulty) setFail(fn func(op, key string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func (f *faulty) Put(ctx context.Context, key string, data []byte) error {
	if err := f.check("put", key); err != nil {
		return err
	}
	return f.Backend.Put(ctx, key, data)
}

func (f *faulty) Delete(ctx context.Context, key string) error {
	if err := f.check("delete", key); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, key)
}

func (f *faulty) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.check("get", key); err != nil {
		return nil, err
	}
	return f.Backend.Get(ctx, key)
}

func (f *faulty) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := f.check("get", key); err != nil {
		return nil, err
	}
	return f.Backend.GetRange(ctx, key, off, n)
}
