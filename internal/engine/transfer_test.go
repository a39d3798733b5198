package engine

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
)

// sparseSource writes a sparse raw image of size bytes with random data at
// a few offsets, and returns its content.
func sparseSource(t *testing.T, path string, size int64) []byte {
	t.Helper()
	want := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 3 << 20, 5<<20 + 12345, size - 700} {
		if off >= size || off < 0 {
			continue
		}
		b := make([]byte, 100_000)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b = b[:min(int64(len(b)), size-off)]
		copy(want[off:], b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func waitJob(t *testing.T, e *Engine, id string) job.Info {
	t.Helper()
	in, err := e.WaitJob(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestImportExportRaw(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	src := filepath.Join(t.TempDir(), "src.img")
	const size = 9<<20 + 1000 // not a multiple of 512
	want := sparseSource(t, src, size)

	ji, err := e.Import(t.Context(), "imp", ImportOptions{Path: src, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if ji.Kind != KindImport || ji.Volume != "imp" {
		t.Fatalf("job %+v", ji)
	}
	done := waitJob(t, e, ji.ID)
	if done.State != job.Done || done.Done != done.Total {
		t.Fatalf("import job %+v", done)
	}
	in, err := e.GetVolume(t.Context(), "imp")
	if err != nil {
		t.Fatal(err)
	}
	if got, wantSize := in.Size, int64(9<<20+1024); got != wantSize {
		t.Fatalf("volume size %d, want %d (rounded up)", got, wantSize)
	}
	if len(in.Jobs) != 0 {
		t.Fatalf("finished job still listed on the volume: %v", in.Jobs)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(in.Path), ".importing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("importing marker left after a finished import: %v", err)
	}
	got := readThrough(t, e, "imp", int(in.Size), 0)
	if !bytes.Equal(got[:size], want) || !blockdev.IsZero(got[size:]) {
		t.Fatal("imported bytes differ from the source")
	}
	if in.Allocated >= in.Size/2 {
		t.Errorf("import did not keep holes: %d of %d bytes allocated", in.Allocated, in.Size)
	}

	out := filepath.Join(t.TempDir(), "out.raw")
	ji, err = e.Export(t.Context(), "imp", ExportOptions{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, e, ji.ID); done.State != job.Done {
		t.Fatalf("export job %+v", done)
	}
	back, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, got) {
		t.Fatal("exported file differs from the volume")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= in.Size/2 {
		t.Errorf("export is not sparse: %d blocks", st.Blocks)
	}

	if _, err := e.Export(t.Context(), "imp", ExportOptions{Path: out}); !errors.Is(err, errkind.ErrFileExists) {
		t.Errorf("export over an existing file: %v", err)
	}
	if _, err := e.Import(t.Context(), "imp", ImportOptions{Path: src, Format: "raw"}); !errors.Is(err, errkind.ErrVolumeExists) {
		t.Errorf("import over an existing volume: %v", err)
	}
	if _, err := e.Import(t.Context(), "rel", ImportOptions{Path: "src.img"}); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("relative import path: %v", err)
	}
	if _, err := e.Import(t.Context(), "fmt", ImportOptions{Path: src, Format: "iso"}); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := e.Import(t.Context(), "small", ImportOptions{Path: src, Format: "raw", Size: 4096}); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("size below the image: %v", err)
	}
	if _, err := e.Import(t.Context(), "missing", ImportOptions{Path: "/nonexistent/x.img"}); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("missing source: %v", err)
	}
	if len(e.ListVolumes(t.Context())) != 1 {
		t.Errorf("failed imports left volumes: %+v", e.ListVolumes(t.Context()))
	}
}

func TestImportDetectsRawWithQemuImg(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	src := filepath.Join(t.TempDir(), "plain.img")
	want := sparseSource(t, src, 1<<20)
	ji, err := e.Import(t.Context(), "auto", ImportOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, e, ji.ID); done.State != job.Done {
		t.Fatalf("job %+v", done)
	}
	if got := readThrough(t, e, "auto", 1<<20, 0); !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
}

func TestQemuImgMissing(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(t.Context(), Config{DataDir: dir, QemuImg: "/nonexistent/qemu-img"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	src := filepath.Join(t.TempDir(), "x.qcow2")
	sparseSource(t, src, 1<<20)
	_, err = e.Import(t.Context(), "q", ImportOptions{Path: src, Format: "qcow2"})
	if !errors.Is(err, errkind.ErrQemuImgMissing) || !strings.Contains(err.Error(), "qemu-utils") {
		t.Fatalf("got %v, want errkind.ErrQemuImgMissing with an install hint", err)
	}
	// Without qemu-img, an omitted format means raw.
	ji, err := e.Import(t.Context(), "r", ImportOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, e, ji.ID); done.State != job.Done {
		t.Fatalf("job %+v", done)
	}
	mustCreate(t, e, CreateOptions{Name: "v", Size: 4096})
	if _, err := e.Export(t.Context(), "v", ExportOptions{Path: filepath.Join(t.TempDir(), "v.qcow2")}); !errors.Is(err, errkind.ErrQemuImgMissing) {
		t.Fatalf("export qcow2 without qemu-img: %v", err)
	}
}

// TestCloseDuringImportRemovesVolume: a daemon stopping in the middle of
// an import cancels it and removes the partial volume, so the next start
// does not serve it. A stand-in qemu-img that never finishes keeps the
// import running.
func TestCloseDuringImportRemovesVolume(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(t.TempDir(), "qemu-img")
	script := `#!/bin/sh
case "$1" in
info) echo '{"format": "qcow2", "virtual-size": 1048576}' ;;
convert) echo "    (0.00/100%)"; exec sleep 600 ;;
esac
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src.qcow2")
	if err := os.WriteFile(src, []byte("not really qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.Context(), Config{DataDir: dir, QemuImg: fake})
	if err != nil {
		t.Fatal(err)
	}
	ji, err := e.Import(t.Context(), "partial", ImportOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if ji.State != job.Running || ji.Total != 1<<20 {
		t.Fatalf("job %+v", ji)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, dir)
	defer e.Close()
	if got := e.ListVolumes(t.Context()); len(got) != 0 {
		t.Fatalf("volumes after an interrupted import: %+v", got)
	}
}

// TestInterruptedImportNotServed: a volume whose import never finished
// (the daemon was killed) comes back in error status, not served, and can
// be removed.
func TestInterruptedImportNotServed(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	if _, err := e.createVolume(t.Context(), CreateOptions{Name: "half", Size: 1 << 20}, true); err != nil {
		t.Fatal(err)
	}
	e.Close() // no job ran: the marker stays, as after kill -9

	e = openEngine(t, dir)
	defer e.Close()
	in, err := e.GetVolume(t.Context(), "half")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != StatusError || !strings.Contains(in.Error, "import into volume half was interrupted") {
		t.Fatalf("info %+v", in)
	}
	if got := e.ListExports(t.Context()); len(got) != 0 {
		t.Fatalf("interrupted import is served: %v", got)
	}
	if err := e.RemoveVolume(t.Context(), "half", false); err != nil {
		t.Fatal(err)
	}
}
