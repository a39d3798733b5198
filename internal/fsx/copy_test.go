package fsx

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// CopyData copies the data ranges byte for byte, leaves the holes holes,
// calls wait for every byte it copies and reports the whole size done.
func TestCopyData(t *testing.T) {
	dir := t.TempDir()
	const size = 40 << 20
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.Truncate(size)
	r := rand.New(rand.NewPCG(3, 4))
	for _, x := range []struct{ off, n int64 }{{0, 100}, {5 << 20, 3<<20 + 7}, {20 << 20, 17 << 20}, {size - 1, 1}} {
		b := make([]byte, x.n)
		for i := range b {
			b[i] = byte(r.IntN(255) + 1)
		}
		if _, err := src.WriteAt(b, x.off); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dst.Truncate(size)
	var waited, done int64
	err = CopyData(t.Context(), dst, src, size, 4<<20, func(ctx context.Context, n int64) error {
		waited += n
		return nil
	}, func(n int64) { done += n })
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src.Name())
	got, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(got, want) {
		t.Fatal("copy differs from the source")
	}
	if done != size {
		t.Errorf("progress reported %d bytes, want %d", done, size)
	}
	if waited >= size || waited < 20<<20 {
		t.Errorf("wait saw %d bytes: want the data ranges only (about 20-30 MiB of %d)", waited, size)
	}
	// The big hole between 8 MiB and 20 MiB stayed a hole in the copy.
	if d, err := unix.Seek(int(dst.Fd()), 9<<20, unix.SEEK_DATA); err != nil || d < 12<<20 {
		t.Errorf("SEEK_DATA from 9 MiB in the copy: %d %v, want the hole kept", d, err)
	}
}

// The pread/pwrite fallback copies the same bytes.
func TestCopyRangeRW(t *testing.T) {
	dir := t.TempDir()
	b := bytes.Repeat([]byte("extrasphere"), 300000)
	os.WriteFile(filepath.Join(dir, "a"), b, 0o644)
	src, _ := os.Open(filepath.Join(dir, "a"))
	defer src.Close()
	dst, _ := os.Create(filepath.Join(dir, "b"))
	defer dst.Close()
	n, err := copyRangeRW(dst, src, 1000, int64(len(b))-1000, make([]byte, 4096))
	if err != nil || n != int64(len(b))-1000 {
		t.Fatalf("copied %d, %v", n, err)
	}
	got, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(got[1000:], b[1000:]) {
		t.Fatal("fallback copy differs")
	}
}

// A cancelled context stops the copy with its error.
func TestCopyDataCancelled(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.Create(filepath.Join(dir, "s"))
	defer src.Close()
	src.Write(bytes.Repeat([]byte{1}, 1<<20))
	dst, _ := os.Create(filepath.Join(dir, "d"))
	defer dst.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := CopyData(ctx, dst, src, 1<<20, 0, nil, nil); err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// With an O_DIRECT destination the copy is the same, also for a size that
// is not a multiple of the direct I/O alignment, and the holes stay.
func TestCopyDataDirect(t *testing.T) {
	dir := t.TempDir()
	const size = 20<<20 + 512
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.Truncate(size)
	r := rand.New(rand.NewPCG(5, 6))
	for _, x := range []struct{ off, n int64 }{{0, 3 << 20}, {12 << 20, size - 12<<20}} {
		b := make([]byte, x.n)
		for i := range b {
			b[i] = byte(r.IntN(255) + 1)
		}
		src.WriteAt(b, x.off)
	}
	dpath := filepath.Join(dir, "dst")
	os.WriteFile(dpath, nil, 0o644)
	os.Truncate(dpath, size)
	dst, err := OpenDirect(dpath)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if !isDirect(int(dst.Fd())) {
		t.Logf("the filesystem of %s refuses O_DIRECT: testing the buffered path", dir)
	}
	if err := CopyData(t.Context(), dst, src, size, 4<<20, nil, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src.Name())
	got, _ := os.ReadFile(dpath)
	if !bytes.Equal(got, want) {
		t.Fatalf("direct copy differs (%d bytes, want %d)", len(got), len(want))
	}
	if d, err := unix.Seek(int(dst.Fd()), 4<<20, unix.SEEK_DATA); err != nil || d < 8<<20 {
		t.Errorf("SEEK_DATA from 4 MiB: %d %v, want the hole kept", d, err)
	}
}

// Stopping the direct writers before their goroutines first run must not
// hang (they once ranged over the queue field, nil by then).
func TestDirectWritersStopAtOnce(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 500 {
		w := newDirectWriters(t.Context(), f, f, 4096, func(int64) {})
		if err := w.wait(); err != nil {
			t.Fatal(err)
		}
	}
}
