package engine

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// A full backup of a thin volume reads only its allocated chunks: the
// flat file's holes (SEEK_DATA/SEEK_HOLE) and the grains no delta holds
// are skipped through the chain's allocation map, not read and hashed.
// The repository's own count of bytes read shows it; the restored image
// still equals the volume (qemu-img compare over NBD).
func TestBackupThinReadsOnlyData(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	serveNBD(t, e)
	repoDir := filepath.Join(t.TempDir(), "repo")
	const chunk = 64 << 10
	if _, err := e.AddRepo(t.Context(), apischema.RepoRequest{Location: repoDir, Init: true, ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	mustCreate(t, e, CreateOptions{Name: "thin", Size: size})
	fill := func(off, n int64, b byte) {
		writeThrough(t, e, "thin", bytes.Repeat([]byte{b}, int(n)), off)
	}
	fill(1<<20, 2<<20, 0x11)         // chunks 16-47 of the flat file
	fill(40<<20+4096, 300<<10, 0x22) // 5 chunks, neither end chunk-aligned
	if _, err := e.CreateSnapshot(t.Context(), []string{"thin"}, "s1"); err != nil {
		t.Fatal(err)
	}
	fill(20<<20, 1<<20, 0x33)    // 16 grains of the delta over a hole
	fill(1<<20+8192, 4096, 0x44) // a delta grain over data of the base
	const wantRead = (32 + 5 + 16) * chunk

	ji, err := e.Backup(t.Context(), apischema.BackupRequest{Volumes: []string{"thin"}})
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("backup: %+v %v", fin, err)
	}
	bs, err := e.ListBackups(t.Context(), "")
	if err != nil || len(bs) != 1 {
		t.Fatalf("backups: %+v %v", bs, err)
	}
	if got := bs[0].Stats.BytesRead; got != wantRead {
		t.Errorf("full backup of a thin volume read %d bytes, want its %d allocated bytes", got, wantRead)
	}
	if got, want := bs[0].Stats.BytesZero, int64(size-wantRead); got != want {
		t.Errorf("BytesZero = %d, want %d", got, want)
	}

	path := filepath.Join(t.TempDir(), "r.raw")
	ji, err = e.Restore(t.Context(), apischema.RestoreRequest{Backup: bs[0].ID, ToFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("restore: %+v %v", fin, err)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", path, "nbd+unix:///thin?socket="+e.cfg.NBDSocket)
}
