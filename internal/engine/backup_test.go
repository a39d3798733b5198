package engine

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// Backups of a running volume: the first is full, the next incremental
// (reading only what CBT says changed), each restores byte for byte to a
// file and to a new volume, the backup snapshot is gone afterwards, and
// prune keeps what the policy says. The last round changes nothing: an
// empty CBT set still makes an incremental backup that reads nothing.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	repoDir := filepath.Join(t.TempDir(), "repo")
	if _, err := e.AddRepo(t.Context(), apischema.RepoRequest{Location: repoDir, Init: true, ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	mustCreate(t, e, CreateOptions{Name: "b", Size: size})
	r := rand.New(rand.NewPCG(5, 6))
	model := make([]byte, size)
	write := func(off, n int64) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.IntN(256))
		}
		writeThrough(t, e, "b", p, off)
		copy(model[off:], p)
	}
	write(0, 6<<20)
	var images [][]byte
	var ids []string
	for round := range 4 {
		if round > 0 && round < 3 {
			write(int64(round)*(3<<20)+12345, 100<<10)
		}
		ji, err := e.Backup(t.Context(), apischema.BackupRequest{Volumes: []string{"b"}})
		if err != nil {
			t.Fatal(err)
		}
		if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
			t.Fatalf("backup %d: %+v %v", round, fin, err)
		}
		images = append(images, bytes.Clone(model))
		bs, err := e.ListBackups(t.Context(), "")
		if err != nil || len(bs) != round+1 {
			t.Fatalf("backups after round %d: %+v %v", round, bs, err)
		}
		last := bs[len(bs)-1]
		ids = append(ids, last.ID)
		if round == 0 && last.Stats.BytesRead != 6<<20 {
			t.Errorf("first backup read %d bytes, want the 6 MiB written (holes are not read)", last.Stats.BytesRead)
		}
		if round > 0 && last.Stats.BytesRead > 512<<10 {
			t.Errorf("incremental backup %d read %d bytes for a 100 KiB change: CBT was not used", round, last.Stats.BytesRead)
		}
		if round == 3 && last.Stats.BytesRead != 0 {
			t.Errorf("backup %d of an unchanged volume read %d bytes, want 0", round, last.Stats.BytesRead)
		}
		if snaps, _ := e.ListSnapshots(t.Context(), "b"); len(snaps) != 0 {
			t.Fatalf("snapshots left after backup %d: %v", round, snaps)
		}
	}
	for i, id := range ids {
		path := filepath.Join(t.TempDir(), "r.raw")
		ji, err := e.Restore(t.Context(), apischema.RestoreRequest{Backup: id, ToFile: path})
		if err != nil {
			t.Fatal(err)
		}
		if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
			t.Fatalf("restore %s: %+v %v", id, fin, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, images[i]) {
			t.Fatalf("restore of backup %d differs", i)
		}
	}
	ji, err := e.Restore(t.Context(), apischema.RestoreRequest{Backup: ids[1][:len(ids[1])-3], ToVolume: "b2"})
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("restore to a volume: %+v %v", fin, err)
	}
	if got := readThrough(t, e, "b2", size, 0); !bytes.Equal(got, images[1]) {
		t.Fatal("restore into a new volume differs")
	}
	rep, err := e.VerifyBackups(t.Context(), "", true)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	pr, err := e.PruneBackups(t.Context(), apischema.PruneRequest{KeepLast: 1})
	if err != nil || len(pr.Keep) != 1 || len(pr.Forget) != 3 || pr.Keep[0].ID != ids[3] {
		t.Fatalf("prune: %+v %v", pr, err)
	}
	if _, err := e.Restore(t.Context(), apischema.RestoreRequest{Backup: ids[0], ToVolume: "b3"}); err == nil {
		t.Fatal("restore of a pruned backup: no error")
	}
}
