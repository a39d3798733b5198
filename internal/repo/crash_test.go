package repo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/repo/backend/local"
)

// Crash tests re-run the test binary as a child that opens a repository
// with EXTRASPHERE_FAILPOINTS set and is SIGKILLed at the failpoint (or
// killed by the parent after a random delay); the parent then checks the
// repository: it opens, verifies clean (reading every chunk), every
// committed backup restores, the dead child's lock does not block (its
// pid is gone), the next backup works and reuses what the child stored,
// and a prune leaves no garbage.
const crashEnv = "EXTRASPHERE_REPO_CRASH_CHILD" // "backup DIR" or "prune DIR ID,ID"

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
	var op, dir, ids string
	fmt.Sscan(arg, &op, &dir, &ids)
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
	r.sweepBatch = 4
	fmt.Println("ready") // TestCrashRandom's kill timer starts here
	switch op {
	case "backup":
		_, err = tryBackupOne(ctx, r, "v", crashSource(), VolumeOptions{})
	case "prune":
		_, err = r.Prune(ctx, strings.Split(ids, ","))
	}
	return err
}

// crashRepo makes the repository the children work on: 4 KiB chunks in
// 16 KiB packs; m0 is forgotten whole (its packs deleted), m1 is
// forgotten but m2 keeps every other chunk of it (its packs repacked).
func crashRepo(t *testing.T) (dir string, b *local.Backend, r *Repo, ms []*Manifest, srcs map[string]memSource) {
	ctx := t.Context()
	dir = filepath.Join(t.TempDir(), "repo")
	b, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err = Init(ctx, b, InitOptions{Password: []byte("pw"), ChunkSize: MinChunkSize, PackSize: 4 * MinChunkSize, KDF: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	old := randomData(1, 3*testChunk) // 36 random 4 KiB chunks
	half := randomData(2, testChunk+5000)
	keep := slices.Clone(half)
	for off := 0; off < len(keep); off += 2 * MinChunkSize {
		copy(keep[off:min(off+MinChunkSize, len(keep))], randomData(uint64(3+off), MinChunkSize))
	}
	srcs = map[string]memSource{}
	for _, src := range []memSource{old, half, keep} {
		m := backupOne(t, r, "v", src, VolumeOptions{})
		ms = append(ms, m)
		srcs[m.ID] = src
	}
	return dir, b, r, ms, srcs
}

// crashCheck checks the repository after the child died.
func crashCheck(t *testing.T, b *local.Backend, op string, ms []*Manifest, srcs map[string]memSource) {
	ctx := t.Context()
	r2, err := Open(ctx, b, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	res, err := r2.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify after the crash: %v", p) })
	if err != nil {
		t.Fatalf("verify after the crash: %v", err)
	}
	list, err := r2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		src, ok := srcs[m.ID]
		if !ok && op == "backup" {
			src, ok = crashSource(), true // the child finished before it was killed
			srcs[m.ID] = src
		}
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
	if op == "backup" && m3.Stats.ChunksDeduped < int64(uploaded) {
		t.Errorf("backup after the crash reused %d chunks, the child left %d", m3.Stats.ChunksDeduped, uploaded)
	}
	srcs[m3.ID] = crashSource()
	if _, err := r2.PruneWith(ctx, []string{ms[0].ID, ms[1].ID}, PruneOptions{RepackAll: true}); err != nil {
		t.Fatalf("prune after the crash: %v", err)
	}
	list, err = r2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err = r2.Verify(ctx, VerifyOptions{ReadData: true}, func(p error) { t.Errorf("verify after the prune: %v", p) })
	if err != nil || res.Unreferenced != 0 || res.OrphanPacks != 0 || res.Backups != len(list) || len(list) < 2 {
		t.Fatalf("after the prune: %+v, %v", res, err)
	}
	for _, m := range list {
		src := srcs[m.ID]
		dst := make(memTarget, len(src))
		if err := r2.Restore(ctx, m, "v", dst, RestoreOptions{}); err != nil || !bytes.Equal(dst, src) {
			t.Fatalf("backup %s does not restore after the prune: %v", m.ID, err)
		}
	}
}

// crashChildCmd is the child for op on the repository in dir.
func crashChildCmd(ctx context.Context, op, dir string, ms []*Manifest, fp string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+op+" "+dir+" "+ms[0].ID+","+ms[1].ID, failpoint.Env+"="+fp)
	return cmd
}

func TestCrash(t *testing.T) {
	tests := []struct {
		op, fp string
	}{
		{"backup", FailBeforeIndex},
		{"backup", FailBeforeManifest},
		{"backup", local.FailBeforeFileSync},
		{"backup", local.FailBeforeRename},
		{"backup", local.FailBeforeDirSync},
		{"prune", FailRepackMid},
		{"prune", FailPruneBeforeIndex},
		{"prune", FailPruneBeforeUnlink},
		{"prune", FailBeforeSweep},
		{"prune", FailMidSweep},
		{"prune", local.FailDeleteBeforeSync},
	}
	for _, tc := range tests {
		t.Run(tc.op+"/"+tc.fp, func(t *testing.T) {
			dir, b, _, ms, srcs := crashRepo(t)
			out, err := crashChildCmd(t.Context(), tc.op, dir, ms, tc.fp).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die at %s: %v\n%s", tc.fp, err, out)
			}
			crashCheck(t, b, tc.op, ms, srcs)
		})
	}
}

// TestCrashRandom kills the child at a random moment instead (a few
// times per operation): whatever step it was in, the checks hold.
func TestCrashRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for _, op := range []string{"backup", "prune"} {
		for k := range 3 {
			t.Run(fmt.Sprintf("%s/%d", op, k), func(t *testing.T) {
				dir, b, _, ms, srcs := crashRepo(t)
				cmd := crashChildCmd(t.Context(), op, dir, ms, "")
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
					t.Fatalf("child did not start: %v", err)
				}
				delay := time.Duration(rng.IntN(40_000)) * time.Microsecond
				time.Sleep(delay)
				cmd.Process.Kill()
				err = cmd.Wait()
				t.Logf("child killed after %v: %v", delay, err)
				crashCheck(t, b, op, ms, srcs)
			})
		}
	}
}
