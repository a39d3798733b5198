//go:build integration

package tests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
)

// crashVolSize is the size of the crash tests' volume; crashDataLen bytes of random data at its
// start make the copy steps take a while at crashRate.
const (
	crashVolSize = 64 << 20
	crashDataLen = 24 << 20
	crashRate    = "16M"
)

// deathTimeout bounds how long a test waits for the daemon to reach its failpoint and kill itself;
// a watchdog, not a performance threshold.
const deathTimeout = 60 * time.Second

// crashWrite is one numbered write of a crashWriter: pattern pat over [off, off+n).
type crashWrite struct {
	off, n int64
	pat    byte
	ok     bool // qemu-io exited 0: the write and the FLUSH after it completed
	out    string
}

func (w crashWrite) String() string {
	return fmt.Sprintf("write -P %#x %d %d (flushed: %v)", w.pat, w.off, w.n, w.ok)
}

// crashWriter writes numbered patterns at seeded random offsets and lengths, one qemu-io per
// write, each followed by a FLUSH, until it is stopped or a write fails (the daemon died). It does
// not touch *testing.T.
type crashWriter struct {
	stop   atomic.Bool
	done   chan struct{}
	writes []crashWrite // read only after done is closed
}

func startCrashWriter(ctx context.Context, uri string, seed uint64, first int) *crashWriter {
	w := &crashWriter{done: make(chan struct{})}
	r := rand.New(rand.NewPCG(seed, uint64(first)))
	go func() {
		defer close(w.done)
		for i := first; !w.stop.Load(); i++ {
			n := 1 + r.Int64N(128<<10)
			off := r.Int64N(crashVolSize - n + 1)
			pat := byte(1 + i%254)
			cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
			cmd := exec.CommandContext(cctx, "qemu-io", "-f", "raw",
				"-c", fmt.Sprintf("write -P %#x %d %d", pat, off, n), "-c", "flush", uri)
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			cancel()
			s := string(out)
			ok := err == nil && strings.Contains(s, "wrote ") && !strings.Contains(s, "failed") && !strings.Contains(s, "qemu-io:")
			w.writes = append(w.writes, crashWrite{off: off, n: n, pat: pat, ok: ok, out: s})
			if !ok {
				return
			}
		}
	}()
	return w
}

// wait stops the writer and returns its writes.
func (w *crashWriter) wait() []crashWrite {
	w.stop.Store(true)
	<-w.done
	return w.writes
}

// crashModel is what the volume must hold: every flushed write, and for a write whose flush did
// not complete (the daemon died under it), either the old or the new bytes.
type crashModel struct {
	data    []byte
	pending []crashWrite
	log     []crashWrite // every write, for failure messages
}

func newCrashModel() *crashModel { return &crashModel{data: make([]byte, crashVolSize)} }

// write sends flushed qemu-io pattern writes that must succeed and records them.
func (m *crashModel) write(t *testing.T, uri string, ws ...crashWrite) {
	t.Helper()
	var cmds []string
	for _, w := range ws {
		cmds = append(cmds, fmt.Sprintf("write -P %#x %d %d", w.pat, w.off, w.n))
	}
	qemuIO(t, uri, append(cmds, "flush")...)
	for _, w := range ws {
		w.ok = true
		m.apply(w)
	}
}

func (m *crashModel) apply(ws ...crashWrite) {
	for _, w := range ws {
		m.log = append(m.log, w)
		if !w.ok {
			m.pending = append(m.pending, w)
			continue
		}
		for i := w.off; i < w.off+w.n; i++ {
			m.data[i] = w.pat
		}
	}
}

// fill writes crashDataLen seeded random bytes at offset 0 with qemu-img and flushes.
func (m *crashModel) fill(t *testing.T, uri string, seed uint64) {
	t.Helper()
	src, data := randomFile(t, t.TempDir(), "crash-data.raw", crashDataLen, seed)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	qemuIO(t, uri, "flush")
	copy(m.data, data)
}

// verify reads the whole export and compares it with the model; a pending write's bytes may hold
// the old or the new content. Afterwards the model holds what was read there.
func (m *crashModel) verify(t *testing.T, d *daemon, vol, when string) {
	t.Helper()
	m.data, m.pending = m.check(t, readFile(t, migExport(t, d, vol)), when+": volume "+vol), nil
}

// check compares got with the model and returns what the model becomes: every acknowledged write
// must be in got; a write that was not acknowledged may hold the old or the new bytes, and got
// says which. what names the copy checked, for the failure message.
func (m *crashModel) check(t *testing.T, got []byte, what string) []byte {
	t.Helper()
	want := bytes.Clone(m.data)
	for _, p := range m.pending {
		for i := p.off; i < p.off+p.n; i++ {
			if got[i] == p.pat {
				want[i] = p.pat
			}
		}
	}
	if i := firstDiff(got, want); i >= 0 {
		var cover []string
		for _, w := range m.log {
			if int64(i) >= w.off && int64(i) < w.off+w.n {
				cover = append(cover, w.String())
			}
		}
		t.Fatalf("%s: byte %d is %#x, want %#x (random data below %d; writes covering it, oldest first: %q)",
			what, i, got[i], want[i], crashDataLen, cover)
	}
	return want
}

// checkOffline stops the daemon, checks with qemu-img that the volume's chain in dir opens and
// reads exactly the model, and starts the daemon again.
func (m *crashModel) checkOffline(t *testing.T, d *daemon, dir, vol string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.raw")
	if err := os.WriteFile(path, m.data, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	top := migTopLayer(t, dir, vol)
	if code, out := runStatus(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", top, path); code != 0 {
		t.Errorf("qemu-img compare %s (daemon stopped) with the model: exit %d:\n%s", top, code, out)
	}
	d.Restart()
}

// startArmed starts a daemon with EXTRASPHERE_FAILPOINTS=fp; its restarts are not armed.
func startArmed(t *testing.T, fp string) *daemon {
	t.Helper()
	t.Setenv(failpoint.Env, fp)
	d := startDaemon(t)
	t.Setenv(failpoint.Env, "")
	return d
}

// waitDeath waits for the daemon to kill itself at failpoint fp.
func (d *daemon) waitDeath(t *testing.T, fp string) {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(deathTimeout):
		d.Kill()
		t.Fatalf("the daemon did not reach failpoint %s within %v", fp, deathTimeout)
	}
	d.proc = nil
	if b, _ := os.ReadFile(d.logPath); !bytes.Contains(b, []byte("failpoint "+fp+": SIGKILL")) {
		t.Fatalf("the daemon exited (%v) without logging failpoint %s", d.waitErr, fp)
	}
}

// startCLI runs the CLI against the daemon in the background; the returned channel gets its error
// and output when it exits. It does not touch *testing.T after returning.
func (d *daemon) startCLI(t *testing.T, args ...string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	cmd := exec.CommandContext(ctx, esBin, append([]string{"--data=" + d.dir, "--api=" + d.apiAddr()}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	res := make(chan string, 1)
	go func() {
		err := cmd.Wait()
		cancel()
		res <- fmt.Sprintf("%v: %s", err, crashLastLine(out.String()))
	}()
	return res
}

// crashLastLine is the last non-empty line of a command's output (a CLI's final word).
func crashLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// checkRecoveryJobs checks that no job failed or is still running after a restart and that a merge
// (consolidate job) ran to completion when wantMerge is set.
func checkRecoveryJobs(t *testing.T, d *daemon, vol string, wantMerge bool) {
	t.Helper()
	merged := false
	for _, j := range migWaitJobs(t, d) {
		if j.State == "failed" {
			t.Errorf("job %s (%s %s) failed: %s", j.ID, j.Kind, j.Volume, j.Error)
		}
		if j.Kind == "consolidate" && j.Volume == vol && j.State == "done" {
			merged = true
		}
	}
	if wantMerge && !merged {
		t.Errorf("after the restart no consolidate job of %s ended done: %+v", vol, migJobs(t, d))
	}
}

// TestCrashMigrate (issue 3, "Must show" 2): for each failpoint of a migration, a daemon armed
// with it migrates a volume (random data, flushed patterns, and a qemu-io write+flush loop during
// the migration) and kills itself there. Restarted unarmed, it rolls back (failpoints before the
// commit: the volume is on the old datastore, the migrate-* snapshot merged back by a job) or
// finishes (after it: on the new one); exactly one complete copy is live, every flushed write reads
// back through the export and through qemu-img (daemon stopped), and a new migration works.
func TestCrashMigrate(t *testing.T) {
	for i, fp := range []struct {
		name   string
		commit bool // the failpoint is after the commit: the volume ends on ds2
	}{
		{"migrate.after-snapshot", false},
		{"migrate.after-copy", false},
		{"migrate.after-switch-reads", false},
		{"migrate.after-merge-copy", false},
		{"migrate.before-commit", false},
		{"migrate.after-commit", true},
		{"migrate.after-remove-old", true},
	} {
		t.Run(fp.name, func(t *testing.T) {
			d := startArmed(t, fp.name)
			d.CreateVolume("cv", "64M")
			dss := map[string]string{"default": migDefaultDS(d), "ds2": migAddDatastore(t, d, "ds2")}
			uri := d.UnixURI("cv")
			m := newCrashModel()
			m.fill(t, uri, uint64(100+i))
			m.write(t, uri, crashWrite{off: 30 << 20, n: 1 << 20, pat: 0xe1}, crashWrite{off: 4095, n: 70000, pat: 0xe2},
				crashWrite{off: crashVolSize - 1, n: 1, pat: 0xe3})

			w := startCrashWriter(t.Context(), uri, uint64(200+i), 1)
			time.Sleep(200 * time.Millisecond) // placement only: the loop is writing when the migration starts
			mig := d.startCLI(t, "migrate", "cv", "--to", "ds2", "--rate", crashRate)
			d.waitDeath(t, fp.name)
			ws := w.wait()
			t.Logf("migrate CLI: %s", <-mig)
			m.apply(ws...)
			t.Logf("%d qemu-io write+flush rounds, the last one flushed: %v", len(ws), len(ws) > 0 && ws[len(ws)-1].ok)

			d.Restart()
			checkRecoveryJobs(t, d, "cv", !fp.commit)
			want := "default"
			if fp.commit {
				want = "ds2"
			}
			migCheckOneCopy(t, d, "cv", want, dss)
			if s := migSnapshots(t, d, "cv"); len(s) != 0 {
				t.Errorf("snapshots after recovery: %v, want none", s)
			}
			m.verify(t, d, "cv", "after the crash at "+fp.name)
			m.checkOffline(t, d, filepath.Join(dss[want], "cv"), "cv")

			// The recovered volume migrates (again) cleanly.
			other := map[string]string{"default": "ds2", "ds2": "default"}[want]
			d.CLI("migrate", "cv", "--to", other)
			migCheckOneCopy(t, d, "cv", other, dss)
			m.verify(t, d, "cv", "after a migration to "+other)
		})
	}
}

// TestCrashConsolidate (issue 3, "Must show" 2): the same for snapshot removal: a daemon armed
// with each consolidation failpoint merges a snapshot's delta (written before and, by the loop,
// during the merge) and kills itself there. The removal committed when it started (the layer lost
// its name), so after the restart the snapshot is gone, the merge has resumed and finished (no
// delta file left), and every flushed write reads back.
func TestCrashConsolidate(t *testing.T) {
	for i, fp := range []string{"consolidate.after-copy", "consolidate.before-unlink", "consolidate.after-unlink"} {
		t.Run(fp, func(t *testing.T) {
			d := startArmed(t, fp)
			d.CreateVolume("cc", "64M")
			uri := d.UnixURI("cc")
			m := newCrashModel()
			m.fill(t, uri, uint64(300+i))
			d.CLI("snapshot", "create", "cc", "--name", "s1")
			m.write(t, uri, crashWrite{off: 1 << 20, n: 3 << 20, pat: 0xf1}, crashWrite{off: 40<<20 + 777, n: 200000, pat: 0xf2},
				crashWrite{off: 10<<20 - 3, n: 7, pat: 0xf3}, crashWrite{off: crashVolSize - 4096, n: 4096, pat: 0xf4})

			w := startCrashWriter(t.Context(), uri, uint64(400+i), 1)
			time.Sleep(200 * time.Millisecond) // placement only
			rm := d.startCLI(t, "snapshot", "rm", "cc", "s1")
			d.waitDeath(t, fp)
			ws := w.wait()
			t.Logf("snapshot rm CLI: %s", <-rm)
			m.apply(ws...)
			t.Logf("%d qemu-io write+flush rounds", len(ws))

			d.Restart()
			checkRecoveryJobs(t, d, "cc", fp != "consolidate.after-unlink")
			dss := map[string]string{"default": migDefaultDS(d)}
			migCheckOneCopy(t, d, "cc", "default", dss)
			if s := migSnapshots(t, d, "cc"); len(s) != 0 {
				t.Errorf("snapshots after recovery: %v, want none (the removal had committed)", s)
			}
			dir := filepath.Join(dss["default"], "cc")
			if top := migTopLayer(t, dir, "cc"); filepath.Base(top) != "cc.vmdk" {
				t.Errorf("after recovery the chain's top is %s, want cc.vmdk (the delta merged)", top)
			}
			m.verify(t, d, "cc", "after the crash at "+fp)
			m.checkOffline(t, d, dir, "cc")
		})
	}
}

// TestCrashMigrateRandomKill (issue 3, "Must show" 2): migrations back and forth under the
// write+flush loop, each with kill -9 of the daemon after a seeded random delay (ES_CRASH_SEED
// reproduces a run). After every restart the volume is complete on exactly one datastore, no
// migrate-* snapshot or leftover is there once the jobs have ended, and every flushed write reads
// back.
func TestCrashMigrateRandomKill(t *testing.T) {
	const rounds = 5
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ES_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ES_CRASH_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (ES_CRASH_SEED=%d reproduces the delays)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))

	d := startDaemon(t)
	d.CreateVolume("rk", "64M")
	dss := map[string]string{"default": migDefaultDS(d), "ds2": migAddDatastore(t, d, "ds2")}
	uri := d.UnixURI("rk")
	m := newCrashModel()
	m.fill(t, uri, seed)

	where := "default"
	landed := map[string]int{}
	next := 1
	for round := range rounds {
		to := map[string]string{"default": "ds2", "ds2": "default"}[where]
		delay := time.Duration(r.Int64N(int64(2500 * time.Millisecond)))
		w := startCrashWriter(t.Context(), uri, seed+uint64(round)+1, next)
		time.Sleep(100 * time.Millisecond)
		mig := d.startCLI(t, "migrate", "rk", "--to", to, "--rate", crashRate)
		time.Sleep(delay)
		d.Kill()
		ws := w.wait()
		next += len(ws)
		out := <-mig
		m.apply(ws...)

		d.Restart()
		checkRecoveryJobs(t, d, "rk", false)
		v, ok := listVolumes(t, d)["rk"]
		if !ok {
			t.Fatalf("round %d: volume rk is not listed after the restart", round)
		}
		t.Logf("round %d: migrate %s -> %s, kill -9 after %v, %d write rounds; volume on %s (CLI: %s)",
			round, where, to, delay.Round(time.Millisecond), len(ws), v.Datastore, out)
		if v.Datastore != where && v.Datastore != to {
			t.Fatalf("round %d: volume on datastore %q, want %s or %s", round, v.Datastore, where, to)
		}
		where = v.Datastore
		landed[where]++
		migCheckOneCopy(t, d, "rk", where, dss)
		m.verify(t, d, "rk", fmt.Sprintf("round %d (kill -9 after %v)", round, delay))
	}
	t.Logf("where the volume was after each kill: %v", landed)
	m.checkOffline(t, d, filepath.Join(dss[where], "rk"), "rk")
}
