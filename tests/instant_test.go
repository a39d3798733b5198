//go:build integration

package tests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
)

// TestInstantRestore (issue 4, "Must show" 2): `backup serve` exports a backup as a new volume at
// once (reads from the repository, writes to a delta); fio writes and verifies on part of it while
// `promote` copies the backup home. Afterwards the rest of the volume equals the backup byte for
// byte, the delta is merged into the flat file, and the volume no longer needs the repository (it
// is forgotten and the daemon restarted).
func TestInstantRestore(t *testing.T) {
	d := startDaemon(t)
	d.CLI("repo", "init", filepath.Join(t.TempDir(), "repo"))
	bkFill(t, d, "src", "96M", 64<<20, 41)
	qemuIO(t, d.UnixURI("src"), "write -P 0x3c 90000000 100000", "flush")
	d.CLI("backup", "run", "src")
	var bs []bkInfo
	if err := json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs); err != nil || len(bs) != 1 {
		t.Fatalf("backup list: %v", err)
	}
	want := readFile(t, migExport(t, d, "src"))

	out := d.CLI("backup", "serve", bs[0].ID, "rv")
	if !strings.Contains(out, "serving backup") || !strings.Contains(out, "promote rv") {
		t.Errorf("backup serve printed %q", out)
	}
	uri := d.UnixURI("rv")
	// Served at once: it reads as the backup before anything is copied.
	if i := firstDiff(readFile(t, migExport(t, d, "rv")), want); i >= 0 {
		t.Fatalf("the served backup differs from the volume at byte %d", i)
	}
	fio := make(chan fioRun, 1)
	go func() {
		fio <- fioJob(t.Context(), 1, append(fioVerifyArgs("instant", uri), "--rw=randwrite", "--bs=4k",
			"--iodepth=8", "--size=16m", "--randseed=9")...)
	}()
	time.Sleep(300 * time.Millisecond) // placement only: fio is writing when promote starts
	d.CLI("promote", "rv")
	if r := <-fio; r.err != nil {
		t.Fatalf("fio during promote: %v\n%s", r.err, r.out)
	}
	migWaitJobs(t, d)
	got := readFile(t, migExport(t, d, "rv"))
	if i := firstDiff(got[16<<20:], want[16<<20:]); i >= 0 {
		t.Fatalf("after promote the volume differs from the backup at byte %d", (16<<20)+i)
	}
	if r := fioJob(t.Context(), 2, append(fioVerifyArgs("instant", uri), "--rw=randwrite", "--bs=4k",
		"--iodepth=8", "--size=16m", "--randseed=9", "--verify_only")...); r.err != nil || !strings.Contains(r.out, "io=16.0MiB") {
		t.Fatalf("fio --verify_only after promote: %v\n%s", r.err, r.out)
	}
	if n := len(deltaFiles(t, d, "rv")); n != 0 {
		t.Errorf("after promote %d delta files are left, want 0 (merged into the flat file)", n)
	}
	// Wrong requests get named errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup", "serve", "nope", "x1"}, "nope"},
		{[]string{"backup", "serve", bs[0].ID, "rv"}, "rv"},
	} {
		code, out := d.CLIStatus(tc.args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("extrasphere %s: exit %d %q, want 1 naming %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
	}
	// It stands alone: without the repository, after a restart, it reads the same.
	d.CLI("repo", "rm", "default")
	d.Stop()
	d.Restart()
	if i := firstDiff(readFile(t, migExport(t, d, "rv")), got); i >= 0 {
		t.Fatalf("after forgetting the repository and a restart the volume differs at byte %d", i)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", d.UnixURI("rv"), migExport(t, d, "rv"))

}

// TestInstantRestoreCrash: kill -9 right after promote's commit point (the descriptor no longer
// names the backup). After the restart the volume is a plain flat file with the delta merged into
// it by the resumed merge, and reads exactly what it read before the crash.
func TestInstantRestoreCrash(t *testing.T) {
	d := startDaemon(t)
	d.CLI("repo", "init", filepath.Join(t.TempDir(), "repo"))
	bkFill(t, d, "cs", "32M", 20<<20, 42)
	d.CLI("backup", "run", "cs")
	var bs []bkInfo
	if err := json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs); err != nil || len(bs) != 1 {
		t.Fatalf("backup list: %v", err)
	}
	d.CLI("backup", "serve", bs[0].ID, "cr")
	qemuIO(t, d.UnixURI("cr"), "write -P 0x61 5000000 200000", "flush") // into the delta
	before := readFile(t, migExport(t, d, "cr"))
	d.Stop()
	t.Setenv(failpoint.Env, "promote-restore.after-commit")
	d.Restart()
	t.Setenv(failpoint.Env, "")
	res := d.startCLI(t, "promote", "cr")
	d.waitDeath(t, "promote-restore.after-commit")
	t.Logf("promote CLI: %s", <-res)
	d.Restart()
	migWaitJobs(t, d)
	if i := firstDiff(readFile(t, migExport(t, d, "cr")), before); i >= 0 {
		t.Fatalf("after the crash the volume differs at byte %d", i)
	}
	if n := len(deltaFiles(t, d, "cr")); n != 0 {
		t.Errorf("after the restart %d delta files are left, want 0", n)
	}
}
