package repo_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
)

// synthImage is a disk image computed on the fly, with issue 4's mix:
// 42% zero chunks, 20% repeats of a few chunks, 38% random ones; gen
// bumps chunks that changed since the first backup.
type synthImage struct {
	size int64
	pool []byte         // random bytes the random chunks are cut from
	gen  map[int64]byte // chunk index -> times it changed
}

const synthChunk = 64 << 10

func newSynthImage(size int64) *synthImage {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, 64<<20)
	for i := 0; i < len(pool); i += 8 {
		binary.LittleEndian.PutUint64(pool[i:], rng.Uint64())
	}
	return &synthImage{size: size, pool: pool, gen: map[int64]byte{}}
}

func (s *synthImage) Size() int64 { return s.size }

func (s *synthImage) ReadAt(_ context.Context, p []byte, off int64) error {
	for len(p) > 0 {
		i := off / synthChunk
		in := off - i*synthChunk
		n := min(int64(len(p)), synthChunk-in)
		s.chunk(i, p[:n], in)
		p, off = p[n:], off+n
	}
	return nil
}

// chunk fills p with chunk i's bytes from offset in.
func (s *synthImage) chunk(i int64, p []byte, in int64) {
	h := uint64(i)*0x9e3779b97f4a7c15 ^ uint64(s.gen[i])<<56
	h ^= h >> 29
	switch class := (h * 0xbf58476d1ce4e5b9 >> 32) % 100; {
	case class < 42 && s.gen[i] == 0:
		clear(p)
	case class < 62 && s.gen[i] == 0: // one of 8 chunks repeated all over
		copy(p, s.pool[int(class%8)*synthChunk+int(in):])
	default: // random: a window of the pool at an odd offset, stamped with i
		start := int(h % uint64(len(s.pool)-2*synthChunk))
		copy(p, s.pool[start+int(in):])
		if in < 16 {
			var stamp [16]byte
			binary.LittleEndian.PutUint64(stamp[:], uint64(i))
			binary.LittleEndian.PutUint64(stamp[8:], h)
			copy(p, stamp[in:])
		}
	}
}

// fileTarget restores into a sparse file.
type fileTarget struct{ f *os.File }

func (t fileTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }

// BenchmarkBackupRestore: a full backup of an image into a local
// repository, an incremental after 1% changed in random 64 KiB blocks,
// and a restore into a file, reported in MiB/s. Run with -benchtime 1x:
//
//	go test -run '^$' -bench 'BackupRestore/512MiB' -benchtime 1x ./internal/repo/
//
// (bench/backup.sh compares the whole product with restic on a 4 GiB
// volume.)
func BenchmarkBackupRestore(b *testing.B) {
	for _, size := range []int64{512 << 20, 4 << 30} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) { benchBackupRestore(b, size) })
	}
}

func benchBackupRestore(b *testing.B, size int64) {
	ctx := context.Background()
	for range b.N {
		dir := b.TempDir()
		be, err := local.Create(filepath.Join(dir, "repo"))
		if err != nil {
			b.Fatal(err)
		}
		r, err := repo.Init(ctx, be, repo.InitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		im := newSynthImage(size)
		backup := func(opts repo.VolumeOptions) (*repo.Manifest, time.Duration) {
			start := time.Now()
			bk, err := r.NewBackup(ctx, repo.BackupOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer bk.Close()
			if _, err := bk.AddVolume(ctx, "disk0", im, opts); err != nil {
				b.Fatal(err)
			}
			m, err := bk.Commit(ctx)
			if err != nil {
				b.Fatal(err)
			}
			return m, time.Since(start)
		}
		m1, full := backup(repo.VolumeOptions{})
		rng := rand.New(rand.NewPCG(3, 4))
		var dirty []blockdev.Range
		n := size / synthChunk / 100
		for int64(len(im.gen)) < n {
			i := rng.Int64N(size / synthChunk)
			if im.gen[i] == 0 {
				im.gen[i]++
				dirty = append(dirty, blockdev.Range{Off: i * synthChunk, Len: synthChunk})
			}
		}
		m2, incr := backup(repo.VolumeOptions{Prev: m1.Volumes[0], Dirty: dirty})
		f, err := os.Create(filepath.Join(dir, "restored.raw"))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := r.Restore(ctx, m2, "disk0", fileTarget{f}, repo.RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
		rest := time.Since(start)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		synced := time.Since(start)
		f.Close()
		mib := float64(size) / (1 << 20)
		b.ReportMetric(mib/full.Seconds(), "full-MiB/s")
		b.ReportMetric(100*incr.Seconds()/full.Seconds(), "incr-%-of-full")
		b.ReportMetric(float64(m2.Stats.BytesStored)/float64(n*synthChunk), "stored/changed")
		b.ReportMetric(mib/rest.Seconds(), "restore-MiB/s")
		b.ReportMetric(mib/synced.Seconds(), "restore+fsync-MiB/s")
		b.Logf("full %v (%d new chunks, %d bytes stored), incremental %v (%d chunks read, %d bytes stored), restore %v (%v with the file's fsync)",
			full, m1.Stats.ChunksNew, m1.Stats.BytesStored, incr, m2.Stats.ChunksRead, m2.Stats.BytesStored, rest, synced)
		r.Close()
	}
}
