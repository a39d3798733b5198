//go:build integration

package tests

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mwWatchdog bounds how long pause, rm and SIGTERM may take while a write is held back. It is a
// hang detector, generous on purpose (the goal is 5 s for pause and rm, 10 s for SIGTERM; the
// measured times are logged), never a performance threshold.
const mwWatchdog = 60 * time.Second

// mwWrite is the write the block policy holds back: 1 MiB at 40 MiB + 4 KiB.
const mwOff, mwLen = 40<<20 + 4096, 1 << 20

// mwStopped is a mirror (policy block) of vm1 to a qemu-nbd that is then stopped with SIGSTOP (a
// hung replica: connections stay open, nothing is answered), with a qemu-io write of pattern 0x5a
// pending. It returns once the mirror noticed (not in sync) and the write is still pending.
func mwStopped(t *testing.T) (*mtQemuNBD, *daemon, <-chan mtResult) {
	t.Helper()
	q := startMtQemuNBD(t, t.TempDir(), mtVolSize)
	t.Cleanup(func() { mwCont(q) }) // before the kill in startMtQemuNBD's cleanup
	src := startDaemon(t)
	src.CreateVolume("vm1", "128M")
	uri := src.UnixURI("vm1")
	mtFill(t, uri, 8<<20, 61)
	src.CLI("mirror", "create", "vm1", "--to", q.URI(), "--on-failure", "block", "--wait")
	mirrorWait(t, src, "vm1", "in-sync")
	if err := q.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	res := mtBackground(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a "+fmt.Sprint(mwOff, " ", mwLen), uri)
	deadline := time.Now().Add(mwWatchdog)
	for m := mirrorOf(t, src, "vm1"); m.State == "in-sync"; m = mirrorOf(t, src, "vm1") {
		if time.Now().After(deadline) {
			t.Fatalf("the mirror stays in sync %v after its target was stopped", mwWatchdog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-res:
		t.Fatalf("policy block: the write finished while the target was stopped: %v\n%s", r.err, r.out)
	default:
	}
	return q, src, res
}

// mwCont resumes a stopped qemu-nbd (a no-op if it is not running).
func mwCont(q *mtQemuNBD) {
	if q.cmd != nil {
		q.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// mwWaitAck waits (watchdog) for the held-back write after what, logs how long it took, and
// returns its result.
func mwWaitAck(t *testing.T, res <-chan mtResult, what string, since time.Time) mtResult {
	t.Helper()
	select {
	case r := <-res:
		t.Logf("%s: the held-back write ended %v later", what, time.Since(since).Round(time.Millisecond))
		return r
	case <-time.After(mwWatchdog):
		t.Fatalf("%s: the held-back write still waits after %v", what, mwWatchdog)
		return mtResult{}
	}
}

// TestMirrorBlockedWritePause (issue 9 D): a hung replica holds a block-policy write back;
// `mirror pause` returns and the write is acknowledged (the user chose to stop replicating), with
// the divergence recorded. After SIGCONT and resume, the replica gets it.
func TestMirrorBlockedWritePause(t *testing.T) {
	q, src, res := mwStopped(t)
	t0 := time.Now()
	src.CLI("mirror", "pause", "vm1")
	t.Logf("mirror pause returned after %v", time.Since(t0).Round(time.Millisecond))
	r := mwWaitAck(t, res, "mirror pause", t0)
	if r.err != nil || !strings.Contains(r.out, "wrote ") {
		t.Fatalf("after pause the write failed: %v\n%s", r.err, r.out)
	}
	m := mirrorOf(t, src, "vm1")
	if m.State != "paused" || !m.Diverged {
		t.Fatalf("after a write acknowledged while paused: state %s diverged %v, want paused and true", m.State, m.Diverged)
	}
	mwCont(q)
	src.CLI("mirror", "resume", "vm1")
	mirrorWait(t, src, "vm1", "in-sync")
	if !mtAll(mtReadAt(t, q.file, mwOff, mwLen), 0x5a) {
		t.Fatal("in sync again, but the replica lacks the write acknowledged while paused")
	}
	src.Stop()
	q.Stop()
	sameImages(t, flatOf(src, "vm1"), q.file)
}

// TestMirrorBlockedWriteRemove (issue 9 D): `mirror rm` with a write held back for a hung replica
// returns, and the write is acknowledged (on the volume; no replica is required any more).
func TestMirrorBlockedWriteRemove(t *testing.T) {
	_, src, res := mwStopped(t)
	t0 := time.Now()
	src.CLI("mirror", "rm", "vm1")
	t.Logf("mirror rm returned after %v", time.Since(t0).Round(time.Millisecond))
	r := mwWaitAck(t, res, "mirror rm", t0)
	if r.err != nil || !strings.Contains(r.out, "wrote ") {
		t.Fatalf("after mirror rm the write failed: %v\n%s", r.err, r.out)
	}
	if code, out := src.CLIStatus("mirror", "status", "vm1"); code == 0 {
		t.Fatalf("after mirror rm, mirror status still shows it:\n%s", out)
	}
	run(t, "qemu-io", "-f", "raw", "-c", "read -P 0x5a "+fmt.Sprint(mwOff, " ", mwLen), src.UnixURI("vm1"))
	src.Stop()
}

// TestMirrorBlockedWriteSIGTERM (issue 9 D): SIGTERM with a write held back for a hung replica:
// the daemon exits (status 0), the client's write fails (EIO) instead of being acknowledged, and
// after a restart with the replica back the mirror resends it.
func TestMirrorBlockedWriteSIGTERM(t *testing.T) {
	q, src, res := mwStopped(t)
	t0 := time.Now()
	src.signal(syscall.SIGTERM)
	select {
	case <-src.exited:
		t.Logf("the daemon exited %v after SIGTERM", time.Since(t0).Round(time.Millisecond))
	case <-time.After(mwWatchdog):
		t.Fatalf("the daemon did not exit within %v of SIGTERM", mwWatchdog)
	}
	src.proc = nil
	if src.waitErr != nil {
		t.Errorf("daemon exit after SIGTERM: %v, want status 0", src.waitErr)
	}
	r := mwWaitAck(t, res, "SIGTERM", t0)
	t.Logf("qemu-io: %v\n%s", r.err, r.out)
	if strings.Contains(r.out, "wrote ") || r.err == nil {
		t.Fatal("the write held back for the replica was acknowledged at the daemon's stop")
	}
	if !strings.Contains(r.out, "Input/output error") {
		t.Errorf("the client got %q, want an I/O error (EIO)", r.out)
	}
	mwCont(q)
	src.Restart()
	mirrorWait(t, src, "vm1", "in-sync")
	src.Stop()
	q.Stop()
	// The write reached the volume before it failed; whatever the volume holds, the replica holds
	// the same.
	sameImages(t, flatOf(src, "vm1"), q.file)
}

// TestMirrorBlockFlushWaitsForReplica (issue 9 E): policy block, a FLUSH returns only when every
// write acknowledged before it is on the replica. 64 MiB written while paused (acknowledged, the
// replica lacks them), then resume, then FLUSH at once: when the FLUSH returns, the file qemu-nbd
// serves must hold all of it (the resync may still run if FLUSH did not wait for it).
func TestMirrorBlockFlushWaitsForReplica(t *testing.T) {
	q := startMtQemuNBD(t, t.TempDir(), mtVolSize)
	src := startDaemon(t)
	src.CreateVolume("vm1", "128M")
	uri := src.UnixURI("vm1")
	src.CLI("mirror", "create", "vm1", "--to", q.URI(), "--on-failure", "block", "--wait")
	src.CLI("mirror", "pause", "vm1")
	data := mtFill(t, uri, 64<<20, 62)
	src.CLI("mirror", "resume", "vm1")
	run(t, "qemu-io", "-f", "raw", "-c", "flush", uri)
	if got := mtReadAt(t, q.file, 0, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatalf("FLUSH returned, but the replica lacks data acknowledged before it (first difference at %d); mirror %+v",
			firstDiff(got, data), mirrorOf(t, src, "vm1"))
	}
	mirrorWait(t, src, "vm1", "in-sync")
	src.Stop()
	q.Stop()
	sameImages(t, flatOf(src, "vm1"), q.file)
}

// TestMirrorDegradeDivergence (issue 9 E): policy degrade, the replica hung: a FLUSH succeeds
// after the replica timeout, and the divergence is recorded durably: `mirror status` shows it
// (--json diverged, and the DIVERGED column), also after a restart.
func TestMirrorDegradeDivergence(t *testing.T) {
	q := startMtQemuNBD(t, t.TempDir(), mtVolSize)
	t.Cleanup(func() { mwCont(q) })
	src := startDaemon(t)
	src.CreateVolume("vm1", "128M")
	uri := src.UnixURI("vm1")
	src.CLI("mirror", "create", "vm1", "--to", q.URI(), "--on-failure", "degrade", "--wait")
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x33 0 64k", uri) // in sync: on the replica, not flushed
	if m := mirrorOf(t, src, "vm1"); m.Diverged {
		t.Fatalf("in sync, diverged is set: %+v", m)
	}
	if err := q.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "raw", "-c", "flush", uri) // the replica cannot flush: degrade records it
	m := mirrorOf(t, src, "vm1")
	if !m.Diverged || m.State == "in-sync" || m.BytesToSync == 0 {
		t.Fatalf("after a FLUSH the hung replica could not make durable: %+v, want diverged, not in sync, bytes to sync", m)
	}
	if out := src.CLI("mirror", "status", "vm1"); !strings.Contains(out, "DIVERGED") || !mwColumn(out, "DIVERGED", "yes") {
		t.Fatalf("mirror status does not show the divergence:\n%s", out)
	}
	src.Stop()
	src.Restart()
	if m := mirrorOf(t, src, "vm1"); !m.Diverged {
		t.Fatalf("after a restart the divergence is forgotten: %+v", m)
	}
	mwCont(q)
	m = mirrorWait(t, src, "vm1", "in-sync")
	if m.Diverged {
		t.Errorf("in sync again but diverged is still set: %+v", m)
	}
	src.Stop()
	q.Stop()
	sameImages(t, flatOf(src, "vm1"), q.file)
}

// mwColumn reports whether the first data row of a table (tabwriter-aligned) has want in column
// col.
func mwColumn(table, col, want string) bool {
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		return false
	}
	i := strings.Index(lines[0], col)
	return i >= 0 && len(lines[1]) > i && strings.HasPrefix(lines[1][i:], want+" ")
}
