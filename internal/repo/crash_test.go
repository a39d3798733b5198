package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
)

// Crash tests re-run the test binary as a child that opens a repository
// with EXTRASPHERE_FAILPOINTS set and is SIGKILLed at the failpoint; the
// parent then checks the repository: it opens, verifies clean (reading
// every chunk), every committed backup restores, the dead child's lock does
// not block (its pid is gone), the next backup works and reuses what the
// child uploaded, and a prune leaves no garbage.
const crashEnv = "EXTRASPHERE_REPO_CRASH_CHILD" // "backup DIR" or "prune DIR ID"

func TestMain(m *testing.M) {
	if arg := os.Getenv(crashEnv); arg != "" {
		if err := crashChild(arg); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0) // the failpoint was not reached
	}
	os.Exit(m.Run())
}

// crashSource is what the child backs up.
func crashSource() memSource { return randomData(99, testChunk) }

func crashChild(arg string) error {
	var op, dir, id string
	fmt.Sscan(arg, &op, &dir, &id)
	ctx := context.Background()
	fp := failpoint.FromEnv()
	b, err := local.Open(dir)
	if err != nil {
		return err
	}
	b.SetFailpoints(fp)
	r, err := Open(ctx, b, []byte("pw"))
	if err != nil {
		return err
	}
	r.SetFailpoints(fp)
	r.sweepBatch = 16
	switch op {
	case "backup":
		_, err = tryBackupOne(ctx, r, "v", crashSource(), VolumeOptions{})
	case "prune":
		_, err = r.Prune(ctx, []string{id})
	}
	return err
}

func TestCrash(t *testing.T) {
	tests := []struct {
		op, fp string
	}{
		{"backup", FailBeforeManifest},
		{"backup", local.FailBeforeFileSync},
		{"backup", local.FailBeforeRename},
		{"backup", local.FailBeforeDirSync},
		{"prune", FailBeforeSweep},
		{"prune", FailMidSweep},
		{"prune", local.FailDeleteBeforeSync},
	}
	for _, tc := range tests {
		t.Run(tc.op+"/"+tc.fp, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "repo")
			b, err := local.Create(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Init(ctx, b, InitOptions{Password: []byte("pw"), ChunkSize: MinChunkSize, KDF: testKDF})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// Two backups; the prune child forgets the first, whose random
			// chunks make two sweep batches.
			old := randomData(1, 3*testChunk) // 32 random 4 KiB chunks: two sweep batches
			m1 := backupOne(t, r, "v", old, VolumeOptions{})
			keep := randomData(2, testChunk+5000)
			m2 := backupOne(t, r, "v", keep, VolumeOptions{})

			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+tc.op+" "+dir+" "+m1.ID, failpoint.Env+"="+tc.fp)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die at %s: %v\n%s", tc.fp, err, out)
			}

			r2, err := Open(ctx, b, []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			res, err := r2.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify after the crash: %v", p) })
			if err != nil {
				t.Fatalf("verify after the crash: %v", err)
			}
			ms, err := r2.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]memSource{m1.ID: old, m2.ID: keep}
			for _, m := range ms {
				src, ok := want[m.ID]
				if !ok {
					t.Fatalf("unexpected backup %s after the crash", m.ID)
				}
				dst := make(memTarget, len(src))
				if err := r2.Restore(ctx, m, "v", dst, RestoreOptions{}); err != nil || !bytes.Equal(dst, src) {
					t.Fatalf("backup %s does not restore after the crash: %v", m.ID, err)
				}
			}
			uploaded := res.Unreferenced
			m3, err := tryBackupOne(ctx, r2, "v", crashSource(), VolumeOptions{})
			if err != nil {
				t.Fatalf("backup after the crash (the dead child's lock must be stale): %v", err)
			}
			if tc.op == "backup" && m3.Stats.ChunksDeduped < int64(uploaded) {
				t.Errorf("backup after the crash reused %d chunks, the child left %d", m3.Stats.ChunksDeduped, uploaded)
			}
			if _, err := r2.Prune(ctx, []string{m1.ID}); err != nil {
				t.Fatalf("prune after the crash: %v", err)
			}
			res, err = r2.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify after the prune: %v", p) })
			if err != nil || res.Unreferenced != 0 || res.Backups != 2 {
				t.Fatalf("after the prune: %+v, %v", res, err)
			}
		})
	}
}
