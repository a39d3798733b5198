//go:build integration

package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3/s3test"
)

// Issue 4, "Must show" 4: faults during backups. Each leaves the volume served and intact, its
// backup snapshot merged away, the repository valid (verify --read-data clean), and the next
// backup working.

// bkFill creates volume vol of size with random data in its first half and returns the data.
func bkFill(t *testing.T, d *daemon, vol, size string, n int64, seed uint64) {
	t.Helper()
	d.CreateVolume(vol, size)
	src, _ := randomFile(t, t.TempDir(), vol+".raw", n, seed)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, d.UnixURI(vol))
}

// bkCheckRecovered checks what every fault must leave: no snapshot on vol once the jobs ended, a
// repository that verifies clean, and a new backup whose restore equals the export.
func bkCheckRecovered(t *testing.T, d *daemon, vol string) {
	t.Helper()
	migWaitJobs(t, d)
	if s := migSnapshots(t, d, vol); len(s) != 0 {
		t.Errorf("snapshots of %s after the fault: %v, want none (the backup snapshot merged away)", vol, s)
	}
	qemuIO(t, d.UnixURI(vol), "write -P 0x5a 1000 5000", "flush") // still served and writable
	if out := d.CLI("backup", "verify", "--read-data"); !strings.Contains(out, "0 missing, 0 corrupt") {
		t.Errorf("verify --read-data after the fault:\n%s", out)
	}
	d.CLI("backup", "run", vol)
	var bs []bkInfo
	if err := json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs); err != nil || len(bs) == 0 {
		t.Fatalf("backup list: %v", err)
	}
	p := filepath.Join(t.TempDir(), "after.raw")
	d.CLI("restore", bs[len(bs)-1].ID, "--to", p)
	if i := firstDiff(readFile(t, p), readFile(t, migExport(t, d, vol))); i >= 0 {
		t.Fatalf("the backup after the fault restores differently from the volume at byte %d", i)
	}
}

// TestBackupS3ServerKilled: versitygw dies in the middle of a backup. The backup fails with an
// error naming the repository; after the server is back, everything works.
func TestBackupS3ServerKilled(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	d := startDaemon(t)
	d.CLI("repo", "init", "s3://"+bucket+"/x", "--endpoint", srv.Endpoint, "--access-key", srv.AccessKey, "--secret-key", srv.SecretKey)
	bkFill(t, d, "sk", "256M", 160<<20, 31)
	res := d.startCLI(t, "backup", "run", "sk")
	deadline := time.Now().Add(cmdTimeout)
	for {
		var js []bkJob
		json.Unmarshal([]byte(d.CLI("job", "list", "--json")), &js)
		var done int64
		for _, j := range js {
			if strings.HasPrefix(j.Detail, "reading") {
				done = 1
			}
		}
		if done > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()
	out := <-res
	if !strings.Contains(out, "repository default") {
		t.Errorf("backup with the S3 server killed: %s, want a failure naming the repository", out)
	}
	srv.Restart(t)
	bkCheckRecovered(t, d, "sk")
}

// TestBackupRepoFull: a local repository on a 24 MiB tmpfs cannot take a 96 MiB random volume:
// the backup fails saying so, and after a prune-free retry on a roomier repository nothing is lost.
func TestBackupRepoFull(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small")
	mountTmpfs(t, dir, "24m")
	d := startDaemon(t)
	d.CLI("repo", "init", dir)
	bkFill(t, d, "rf", "128M", 96<<20, 32)
	code, out := d.CLIStatus("backup", "run", "rf")
	if code != 1 || !strings.Contains(out, "no space") {
		t.Fatalf("backup into a full repository: exit %d:\n%s\nwant exit 1 saying no space", code, out)
	}
	migWaitJobs(t, d)
	if s := migSnapshots(t, d, "rf"); len(s) != 0 {
		t.Errorf("snapshots after the failed backup: %v", s)
	}
	if out := d.CLI("backup", "verify"); !strings.Contains(out, "0 backups") || !strings.Contains(out, "0 missing, 0 corrupt") {
		t.Errorf("verify of the full repository:\n%s", out)
	}
	d.CLI("repo", "rm", "default")
	d.CLI("repo", "init", filepath.Join(t.TempDir(), "big"))
	bkCheckRecovered(t, d, "rf")
}

// TestBackupDaemonKilled: kill -9 of the daemon after a backup's snapshot and after its chunks are
// uploaded (before the manifest). After the restart the snapshot is merged away, every flushed
// write is there, and the next backup (which must not trust the bitmap: its generation began with
// a backup that never committed) reads the whole volume and restores exactly.
func TestBackupDaemonKilled(t *testing.T) {
	for _, fp := range []string{"backup.after-snapshot", "repo.backup.before-manifest"} {
		t.Run(fp, func(t *testing.T) {
			d := startDaemon(t)
			d.CLI("repo", "init", filepath.Join(t.TempDir(), "repo"))
			bkFill(t, d, "dk", "64M", 32<<20, 33)
			d.CLI("backup", "run", "dk") // a first, good backup
			qemuIO(t, d.UnixURI("dk"), "write -P 0x77 40000000 300000", "flush")
			before := readFile(t, migExport(t, d, "dk"))
			d.Stop()
			t.Setenv(failpoint.Env, fp) // armed for this run of the daemon only
			d.Restart()
			t.Setenv(failpoint.Env, "")
			res := d.startCLI(t, "backup", "run", "dk")
			d.waitDeath(t, fp)
			t.Logf("backup CLI: %s", <-res)
			d.Restart()
			migWaitJobs(t, d)
			if i := firstDiff(readFile(t, migExport(t, d, "dk")), before); i >= 0 {
				t.Fatalf("after the crash the volume differs at byte %d", i)
			}
			bkCheckRecovered(t, d, "dk")
			var bs []bkInfo
			json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs)
			// The second is full: nothing reused from the first, and every byte written read
			// (the holes of the thin volume are skipped, not read).
			if len(bs) != 2 || bs[1].Stats.BytesReused != 0 || bs[1].Stats.BytesRead < 32<<20+300000 {
				t.Errorf("backups after the crash: %+v, want 2, the second a full one", bs)
			}
		})
	}
}

// TestBackupCorruption: a flipped bit in the repository is found by verify --read-data and by
// restore, each naming the backup and volume; nothing corrupt is restored silently.
func TestBackupCorruption(t *testing.T) {
	repoDir := filepath.Join(t.TempDir(), "repo")
	d := startDaemon(t)
	d.CLI("repo", "init", repoDir)
	bkFill(t, d, "cr", "32M", 16<<20, 34)
	d.CLI("backup", "run", "cr")
	var bs []bkInfo
	json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs)
	// The largest data object (a chunk or a pack) gets one bit flipped in its middle.
	var victim string
	var size int64
	filepath.Walk(repoDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size && !strings.Contains(p, "snapshots") {
			victim, size = p, fi.Size()
		}
		return nil
	})
	b := readFile(t, victim)
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := d.CLIStatus("backup", "verify", "--read-data")
	if code != 1 || !strings.Contains(out, bs[0].ID) || !strings.Contains(out, "cr") {
		t.Errorf("verify --read-data with a flipped bit in %s: exit %d:\n%s\nwant exit 1 naming backup %s and volume cr", victim, code, out, bs[0].ID)
	}
	p := filepath.Join(t.TempDir(), "bad.raw")
	code, out = d.CLIStatus("restore", bs[0].ID, "--to", p)
	if code != 1 || !strings.Contains(out, "corrupt") || !strings.Contains(out, bs[0].ID) {
		t.Errorf("restore with a flipped bit: exit %d:\n%s\nwant exit 1 naming the corrupt data", code, out)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("a failed restore left %s: %v", p, err)
	}
}
