//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// jobsIdleTimeout bounds how long a test waits for the daemon's jobs (a rollback merge after a
// restart, a migration) to end; a watchdog, not a performance threshold.
const jobsIdleTimeout = 90 * time.Second

// migJob is one entry of `job list --json`.
type migJob struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Volume string `json:"volume"`
	State  string `json:"state"`
	Done   int64  `json:"done_bytes"`
	Total  int64  `json:"total_bytes"`
	Error  string `json:"error"`
}

// migJobs runs `job list --json`.
func migJobs(t *testing.T, d *daemon) []migJob {
	t.Helper()
	out := d.CLI("job", "list", "--json")
	var js []migJob
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("job list --json: %v:\n%s", err, out)
	}
	return js
}

// migWaitJobs polls `job list --json` until no job is running and returns the list.
func migWaitJobs(t *testing.T, d *daemon) []migJob {
	t.Helper()
	deadline := time.Now().Add(jobsIdleTimeout)
	for {
		js := migJobs(t, d)
		running := 0
		for _, j := range js {
			if j.State == "running" {
				running++
			}
		}
		if running == 0 {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still running after %v: %+v", jobsIdleTimeout, js)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// migAddDatastore adds a datastore NAME on a fresh directory and returns its path.
func migAddDatastore(t *testing.T, d *daemon, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	d.CLI("datastore", "add", name, path)
	return path
}

// migDefaultDS is the path of the daemon's default datastore.
func migDefaultDS(d *daemon) string { return filepath.Join(d.dir, "datastores", "default") }

// migSnapshots lists a volume's snapshot names (`snapshot list VOL --json`), oldest first.
func migSnapshots(t *testing.T, d *daemon, vol string) []string {
	t.Helper()
	out := d.CLI("snapshot", "list", vol, "--json")
	var l []struct {
		Name  string `json:"name"`
		Layer string `json:"layer"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("snapshot list %s --json: %v:\n%s", vol, err, out)
	}
	names := make([]string, len(l))
	for i, s := range l {
		names[i] = s.Name
	}
	return names
}

// migExport copies what the export serves into a raw file in a temp dir and returns its path.
func migExport(t *testing.T, d *daemon, vol string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), vol+".raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.UnixURI(vol), path)
	return path
}

// migTopLayer is the file qemu-img opens to read a volume's chain in dir: its newest delta
// (VOL-NNNNNN.vmdk), else its descriptor.
func migTopLayer(t *testing.T, dir, vol string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, vol+"-[0-9][0-9][0-9][0-9][0-9][0-9].vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		return filepath.Join(dir, vol+".vmdk")
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// migCheckOneCopy checks that exactly one complete copy of vol is live: it is listed once, ok, on
// datastore want, its directory exists only in that datastore's path, no datastore holds a
// .creating-/.removing- leftover, and no .migrated-from marker or migrate-* snapshot is left.
// dss maps datastore names to paths.
func migCheckOneCopy(t *testing.T, d *daemon, vol, want string, dss map[string]string) {
	t.Helper()
	vs := listVolumes(t, d)
	v, ok := vs[vol]
	switch {
	case !ok:
		t.Fatalf("volume %s is not listed (volumes %v)", vol, keys(vs))
	case v.Datastore != want || v.Status != "ok":
		t.Errorf("volume %s: datastore %q status %q (%s), want datastore %q status ok", vol, v.Datastore, v.Status, v.Error, want)
	case !strings.HasPrefix(v.Path, dss[want]+string(os.PathSeparator)):
		t.Errorf("volume %s: path %s is not under datastore %s at %s", vol, v.Path, want, dss[want])
	}
	// The old copy is removed in the background after the switch: give
	// it a bounded time to go, then report what is left.
	var problems []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		problems = migLeftovers(t, vol, want, dss)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	for _, s := range migSnapshots(t, d, vol) {
		if strings.HasPrefix(s, "migrate-") {
			t.Errorf("volume %s: migration snapshot %s left behind", vol, s)
		}
	}
}

// migFio runs one verifying fio job: 4 KiB randwrite QD16 over size bytes from offset 16 MiB
// (clear of the first 16 MiB, where the tests keep patterns), then the crc32c read-back. Extra
// options are appended (e.g. --verify_only). It does not touch *testing.T: it runs in goroutines.
func migFio(ctx context.Context, uri string, size string, seed int, extra ...string) fioRun {
	args := append(fioVerifyArgs("mig", uri), "--rw=randwrite", "--bs=4k", "--iodepth=16",
		"--offset=16m", "--size="+size, fmt.Sprintf("--randseed=%d", seed))
	return fioJob(ctx, seed, append(args, extra...)...)
}

// migFioLoop runs back-to-back migFio jobs (seeds 1, 2, ...) on one URI until wait is called.
type migFioLoop struct {
	stop atomic.Bool
	done chan []fioRun
	runs []fioRun // set by the first wait
	got  bool
}

func startMigFioLoop(t *testing.T, uri, size string) *migFioLoop {
	l := &migFioLoop{done: make(chan []fioRun, 1)}
	go func() {
		var runs []fioRun
		for i := 1; i == 1 || !l.stop.Load(); i++ {
			r := migFio(t.Context(), uri, size, i)
			runs = append(runs, r)
			if r.err != nil {
				break
			}
		}
		l.done <- runs
	}()
	t.Cleanup(func() { l.wait() })
	return l
}

// wait stops the loop after the run in progress and returns every run. Not safe for concurrent
// use: only the test goroutine (and its cleanup) calls it.
func (l *migFioLoop) wait() []fioRun {
	if !l.got {
		l.stop.Store(true)
		l.runs, l.got = <-l.done, true
	}
	return l.runs
}

// check waits for the loop and fails the test on a failed run; it returns the last run's seed.
func (l *migFioLoop) check(t *testing.T, what string) int {
	t.Helper()
	runs := l.wait()
	for _, r := range runs {
		if r.err != nil {
			t.Fatalf("%s: fio run %d: %v:\n%s", what, r.n, r.err, r.out)
		}
	}
	t.Logf("%s: %d verifying fio runs passed", what, len(runs))
	return runs[len(runs)-1].n
}

// TestMigrateUnderFio (issue 3, "Must show" 1): `migrate VOL --to ds2` while verifying fio jobs
// write through the export; every fio run passes its crc32c verify and a verify-only pass re-reads
// the last one after the move; the volume is on ds2 and only there; the snapshot taken before
// comes along (revert to it gives its content back); with the daemon stopped, qemu-img reads the
// moved chain identical to what the export served.
func TestMigrateUnderFio(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("mv", "128M")
	ds2 := migAddDatastore(t, d, "ds2")
	dss := map[string]string{"default": migDefaultDS(d), "ds2": ds2}
	uri := d.UnixURI("mv")

	qemuIO(t, uri, "write -P 0x41 0 4M", "flush")
	d.CLI("snapshot", "create", "mv", "--name", "s1")
	qemuIO(t, uri, "write -P 0x42 1M 1M", "write -P 0x43 12345 4567", "flush")

	loop := startMigFioLoop(t, uri, "48m")
	waitConnected(t, d, "mv")
	time.Sleep(500 * time.Millisecond) // placement only: fio is writing when the migration starts
	out := d.CLI("migrate", "mv", "--to", "ds2", "--rate", "64M")
	t.Logf("migrate: %s", strings.TrimSpace(out))
	time.Sleep(300 * time.Millisecond) // and keeps writing after the pivot
	last := loop.check(t, "during migrate")

	if r := migFio(t.Context(), uri, "48m", last, "--verify_only"); r.err != nil || !strings.Contains(r.out, "io=48.0MiB") {
		t.Fatalf("fio --verify_only of run %d after the migration: %v, want 48 MiB read and verified:\n%s", last, r.err, r.out)
	}
	qemuIO(t, uri, "read -P 0x41 0 12345", "read -P 0x43 12345 4567", "read -P 0x41 16912 1031664",
		"read -P 0x42 1M 1M", "read -P 0x41 2M 2M")
	js := migWaitJobs(t, d)
	if n := len(js); n != 1 || js[0].Kind != "migrate" || js[0].State != "done" {
		t.Errorf("jobs: %+v, want one done migrate job", js)
	}
	migCheckOneCopy(t, d, "mv", "ds2", dss)
	if got, want := fmt.Sprint(migSnapshots(t, d, "mv")), "[s1]"; got != want {
		t.Errorf("snapshots after migrate: %s, want %s", got, want)
	}

	// With the daemon stopped, qemu-img opens the moved chain (ds2 only) and reads what was served.
	served := migExport(t, d, "mv")
	d.Stop()
	top := migTopLayer(t, filepath.Join(ds2, "mv"), "mv")
	info := run(t, "qemu-img", "info", "--backing-chain", top)
	if strings.Contains(info, migDefaultDS(d)) || !strings.Contains(info, filepath.Join(ds2, "mv", "mv.vmdk")) {
		t.Errorf("qemu-img info --backing-chain %s: want a chain in %s only:\n%s", top, ds2, info)
	}
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", top, served)
	d.Restart()
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", uri, served)

	// The snapshot's content came along.
	d.CLI("snapshot", "revert", "mv", "s1")
	qemuIO(t, uri, "read -P 0x41 0 4M")
}

// TestMigrateCancel: `job cancel` during a rate-limited migration (--rate 20M, a 512 MiB volume
// with 160 MiB of data) rolls back: the volume stays on its datastore, ds2 holds no staging
// directory, no migrate-* snapshot survives the rollback merge, and the data, including a write
// made into the migration's delta, is intact.
func TestMigrateCancel(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("mc", "512M")
	ds2 := migAddDatastore(t, d, "ds2")
	dss := map[string]string{"default": migDefaultDS(d), "ds2": ds2}
	uri := d.UnixURI("mc")

	src, data := randomFile(t, t.TempDir(), "mc-data.raw", 160<<20, 20261125)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	qemuIO(t, uri, "flush")
	model := make([]byte, 512<<20)
	copy(model, data)

	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	mig := exec.CommandContext(ctx, esBin, "--data="+d.dir, "--api="+d.apiAddr(), "migrate", "mc", "--to", "ds2", "--rate", "20M")
	var migOut bytes.Buffer
	mig.Stdout, mig.Stderr = &migOut, &migOut
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	migDone := make(chan error, 1)
	go func() { migDone <- mig.Wait() }()

	// Wait until the copy is under way, write into the migration's delta, then cancel.
	var id string
	deadline := time.Now().Add(readyTimeout)
	for id == "" {
		for _, j := range migJobs(t, d) {
			if j.Kind == "migrate" && j.State == "running" && j.Done > 0 {
				id = j.ID
			}
		}
		if id == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no running migrate job with progress after %v: %+v", readyTimeout, migJobs(t, d))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := migSnapshots(t, d, "mc"); len(got) != 1 || !strings.HasPrefix(got[0], "migrate-") {
		t.Errorf("snapshots during the migration: %v, want one migrate-* snapshot", got)
	}
	qemuIO(t, uri, "write -P 0x77 300M 1M", "write -P 0x78 7777 12345", "flush")
	for i := range 1 << 20 {
		model[300<<20+i] = 0x77
	}
	for i := range 12345 {
		model[7777+i] = 0x78
	}
	if st := migDSEntries(t, ds2); len(st) != 1 {
		t.Errorf("ds2 during the copy: staging dirs %v, want one .creating-mc-*", st)
	}
	d.CLI("job", "cancel", id)
	err := <-migDone
	if err == nil || !strings.Contains(migOut.String(), "cancelled") {
		t.Errorf("migrate after job cancel: %v, want a failure saying cancelled:\n%s", err, migOut.String())
	}

	js := migWaitJobs(t, d)
	for _, j := range js {
		if j.ID == id && j.State != "cancelled" {
			t.Errorf("migrate job %s: state %s, want cancelled", id, j.State)
		}
	}
	migCheckOneCopy(t, d, "mc", "default", dss)
	if st := migDSEntries(t, ds2); len(st) != 0 {
		t.Errorf("ds2 after cancel: %v left", st)
	}
	if got := migSnapshots(t, d, "mc"); len(got) != 0 {
		t.Errorf("snapshots after the rollback: %v, want none", got)
	}
	if m, _ := filepath.Glob(filepath.Join(migDefaultDS(d), "mc", "mc-0*.vmdk")); len(m) != 0 {
		t.Errorf("delta files after the rollback: %v, want none (merged back)", m)
	}
	got := readFile(t, migExport(t, d, "mc"))
	if i := firstDiff(got, model); i >= 0 {
		t.Fatalf("after cancel and rollback the volume differs from what was written at byte %d", i)
	}
}

// migDSEntries lists the entries of a datastore directory other than its marker.
func migDSEntries(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "extrasphere-datastore.json" {
			out = append(out, e.Name())
		}
	}
	return out
}

// migLeftovers lists what is wrong on disk for a volume that must live on
// datastore want only.
func migLeftovers(t *testing.T, vol, want string, dss map[string]string) []string {
	t.Helper()
	var out []string
	for name, path := range dss {
		ents, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, ".creating-") || strings.HasPrefix(n, ".removing-") {
				out = append(out, fmt.Sprintf("datastore %s: leftover %s", name, n))
			}
		}
		_, err = os.Stat(filepath.Join(path, vol))
		switch {
		case name == want && err != nil:
			out = append(out, fmt.Sprintf("datastore %s: volume dir: %v", name, err))
		case name != want && err == nil:
			out = append(out, fmt.Sprintf("datastore %s still has a directory %s/ (the volume is on %s)", name, vol, want))
		}
		if _, err := os.Stat(filepath.Join(path, vol, ".migrated-from")); err == nil {
			out = append(out, fmt.Sprintf("datastore %s: %s/.migrated-from is still there", name, vol))
		}
	}
	return out
}
