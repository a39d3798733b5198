// Package repotest is the backup repository suite: Run(t, open) drives
// internal/repo over any backend (a directory, a real S3 server) and
// checks what the repository promises: byte-identical restores of full
// and incremental backups, reads limited to dirty chunks, dedup, zero
// chunks that cost nothing, chunks packed into few objects, stored bytes
// close to the changed bytes, prune and repack, verify, detection of
// every corruption with the backup, volume, offset and chunk named,
// interrupted backups reused, and locking.
//
// It touches the storage only through backend.Backend (corruption is a
// Put of altered bytes), so every backend runs it unchanged. Each test
// runs twice: unencrypted and encrypted.
package repotest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// ChunkSize of the repositories the suite makes: small, so that a few
// MiB make many chunks.
const ChunkSize = 64 << 10

// PackSize of the repositories the suite makes: small, so that a few MiB
// make several packs (the object-count test uses the default).
const PackSize = 256 << 10

// testKDF keeps argon2id cheap in tests (the parameters are stored, so
// Open uses them too).
func testKDF() repo.KDFParams { return repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1} }

// Run runs the suite. open must return a fresh, empty backend per call;
// the suite closes it.
func Run(t *testing.T, open func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"InitOpen", testInitOpen},
		{"FullRestore", testFullRestore},
		{"Incremental", testIncremental},
		{"Dedup", testDedup},
		{"SmallChange", testSmallChange},
		{"FewObjects", testFewObjects},
		{"VolumeReader", testVolumeReader},
		{"Prune", testPrune},
		{"PruneRepack", testPruneRepack},
		{"ReaderDuringRepack", testReaderDuringRepack},
		{"CorruptChunk", testCorruptChunk},
		{"TruncatedPack", testTruncatedPack},
		{"MissingChunk", testMissingChunk},
		{"LostIndex", testLostIndex},
		{"BadManifest", testBadManifest},
		{"Interrupted", testInterrupted},
		{"Locking", testLocking},
		{"ConcurrentBackupPrune", testConcurrentBackupPrune},
		{"Secrecy", testSecrecy},
	}
	for _, mode := range []struct {
		name     string
		password []byte
	}{{"Plain", nil}, {"Encrypted", []byte("correct horse battery staple")}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					b := open(t)
					t.Cleanup(func() { b.Close() })
					e := &env{t: t, b: b, password: mode.password}
					tc.fn(t, e)
				})
			}
		})
	}
}

// env is one test's backend and repository.
type env struct {
	t        *testing.T
	b        backend.Backend
	password []byte
	r        *repo.Repo
}

// init makes the repository (once) and returns it.
func (e *env) init() *repo.Repo {
	e.t.Helper()
	if e.r != nil {
		return e.r
	}
	r, err := repo.Init(e.t.Context(), e.b, repo.InitOptions{Password: e.password, ChunkSize: ChunkSize, PackSize: PackSize, KDF: testKDF()})
	if err != nil {
		e.t.Fatalf("Init: %v", err)
	}
	e.t.Cleanup(func() { r.Close() })
	e.r = r
	return r
}

// open opens a second handle on the repository (another process, as far
// as the repository can tell apart: locks are per handle).
func (e *env) open() *repo.Repo {
	e.t.Helper()
	r, err := repo.Open(e.t.Context(), e.b, e.password)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// vol is a volume to back up: a name, a source, options.
type vol struct {
	name string
	src  repo.Source
	opts repo.VolumeOptions
}

// backup takes one backup of vols and commits it.
func backup(t *testing.T, r *repo.Repo, opts repo.BackupOptions, vols ...vol) *repo.Manifest {
	t.Helper()
	m, err := tryBackup(t.Context(), r, opts, vols...)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return m
}

func tryBackup(ctx context.Context, r *repo.Repo, opts repo.BackupOptions, vols ...vol) (*repo.Manifest, error) {
	b, err := r.NewBackup(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	for _, v := range vols {
		if _, err := b.AddVolume(ctx, v.name, v.src, v.opts); err != nil {
			return nil, err
		}
	}
	return b.Commit(ctx)
}

// restore restores a volume into memory.
func restore(t *testing.T, r *repo.Repo, m *repo.Manifest, volume string) []byte {
	t.Helper()
	got, err := tryRestore(t.Context(), r, m, volume)
	if err != nil {
		t.Fatalf("restore %s of %s: %v", volume, m.ID, err)
	}
	return got
}

func tryRestore(ctx context.Context, r *repo.Repo, m *repo.Manifest, volume string) ([]byte, error) {
	v, err := m.Volume(volume)
	if err != nil {
		return nil, err
	}
	dst := make(memTarget, v.Size)
	var last int64
	err = r.Restore(ctx, m, volume, dst, repo.RestoreOptions{Progress: func(done, total int64) {
		if done < last || total != v.Size {
			panic("restore progress went backwards or has the wrong total")
		}
		last = done
	}})
	if err == nil && last != v.Size {
		err = errors.New("restore progress did not reach the volume size")
	}
	return dst, err
}

// verify runs Verify and returns the problems.
func verify(t *testing.T, r *repo.Repo, readData bool) (*repo.VerifyResult, []error) {
	t.Helper()
	var problems []error
	res, err := r.Verify(t.Context(), repo.VerifyOptions{ReadData: readData}, func(p error) { problems = append(problems, p) })
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Problems != len(problems) {
		t.Fatalf("Verify counted %d problems, reported %d", res.Problems, len(problems))
	}
	return res, problems
}

// verifyClean fails the test on any problem.
func verifyClean(t *testing.T, r *repo.Repo) *repo.VerifyResult {
	t.Helper()
	res, problems := verify(t, r, true)
	for _, p := range problems {
		t.Errorf("verify: %v", p)
	}
	return res
}

// objects lists the keys under prefix with their sizes.
func objects(t *testing.T, b backend.Backend, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := b.List(t.Context(), prefix, func(k string, n int64) error {
		out[k] = n
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

// distinct counts the distinct non-null ids of volumes.
func distinct(vs ...*repo.Volume) int {
	var ids []repo.ID
	for _, v := range vs {
		for _, id := range v.Chunks {
			if !id.IsNull() {
				ids = append(ids, id)
			}
		}
	}
	slices.SortFunc(ids, func(a, b repo.ID) int { return slices.Compare(a[:], b[:]) })
	return len(slices.Compact(ids))
}

// locate returns where the index puts chunk id (its first copy).
func locate(t *testing.T, r *repo.Repo, id repo.ID) repo.ChunkLocation {
	t.Helper()
	locs, err := r.Locate(t.Context(), id)
	if err != nil {
		t.Fatalf("Locate(%s): %v", id, err)
	}
	return locs[0]
}

// editBlob rewrites the pack holding chunk id with edit applied to the
// chunk's blob (same length), and returns a function that puts the pack
// back as it was.
func editBlob(t *testing.T, b backend.Backend, loc repo.ChunkLocation, edit func(blob []byte)) (restore func()) {
	t.Helper()
	ctx := t.Context()
	orig, err := b.Get(ctx, loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	obj := slices.Clone(orig)
	edit(obj[loc.Offset : loc.Offset+loc.Length])
	if err := b.Put(ctx, loc.Key, obj); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := b.Put(ctx, loc.Key, orig); err != nil {
			t.Fatal(err)
		}
	}
}

// storedBytes is the total size of the objects under prefix.
func storedBytes(t *testing.T, b backend.Backend, prefix string) int64 {
	var n int64
	for _, size := range objects(t, b, prefix) {
		n += size
	}
	return n
}
