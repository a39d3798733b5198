//go:build integration

package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mtVolSize is the size of the mirrored volumes of these tests ("128M").
const mtVolSize = 128 << 20

// mtQemuNBD is a qemu-nbd serving a raw file on a unix socket (export name ""), killable and
// restartable on the same socket and file.
type mtQemuNBD struct {
	t          *testing.T
	file, sock string
	cmd        *exec.Cmd
	exited     chan struct{}
	out        bytes.Buffer // all incarnations' output; read only after exited
}

// startMtQemuNBD creates a zero file of size bytes (unless it exists) and serves it. --persistent:
// the mirror's probe at create and its reconnects are separate connections.
func startMtQemuNBD(t *testing.T, dir string, size int64) *mtQemuNBD {
	t.Helper()
	q := &mtQemuNBD{t: t, file: filepath.Join(dir, "replica.raw"), sock: filepath.Join(dir, "q.sock")}
	if err := os.WriteFile(q.file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(q.file, size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if q.cmd != nil {
			q.cmd.Process.Kill()
			<-q.exited
		}
	})
	q.start()
	return q
}

// URI is the export's URI.
func (q *mtQemuNBD) URI() string { return "nbd+unix:///?socket=" + q.sock }

// start launches an incarnation and waits until its socket accepts.
func (q *mtQemuNBD) start() {
	q.t.Helper()
	cmd := exec.Command("qemu-nbd", "-f", "raw", "--shared=4", "--persistent", "-k", q.sock, q.file)
	cmd.Stdout, cmd.Stderr = &q.out, &q.out
	if err := cmd.Start(); err != nil {
		q.t.Fatalf("start qemu-nbd: %v", err)
	}
	exited := make(chan struct{})
	q.cmd, q.exited = cmd, exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(readyTimeout)
	for {
		if c, err := net.Dial("unix", q.sock); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			q.cmd = nil
			q.t.Fatalf("qemu-nbd exited while starting:\n%s", q.out.String())
		default:
		}
		if time.Now().After(deadline) {
			q.t.Fatalf("qemu-nbd did not listen on %s within %v", q.sock, readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL (no flush, no goodbye) and waits; Stop sends SIGTERM and waits.
func (q *mtQemuNBD) Kill() { q.end(os.Kill) }
func (q *mtQemuNBD) Stop() { q.end(os.Interrupt) }

func (q *mtQemuNBD) end(sig os.Signal) {
	q.t.Helper()
	if q.cmd == nil {
		q.t.Fatal("qemu-nbd is not running")
	}
	q.cmd.Process.Signal(sig)
	<-q.exited
	q.cmd = nil
}

// mtFill writes n seeded random bytes at offset 0 of the export and returns them.
func mtFill(t *testing.T, uri string, n int64, seed uint64) []byte {
	t.Helper()
	path, data := randomFile(t, t.TempDir(), "fill.raw", n, seed)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", path, uri)
	return data
}

// mtReadAt reads n bytes at off of a file.
func mtReadAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d+%d: %v", path, off, n, err)
	}
	return b
}

// mtAll reports whether every byte of b is pat.
// (bytes.Trim would read the pattern as UTF-8: every byte from 0x80 up is then the same
// invalid rune, and 0xa1 would pass for 0xb2.)
func mtAll(b []byte, pat byte) bool { return bytes.Count(b, []byte{pat}) == len(b) }

// mtBackground runs a command in the background; the channel gets its error and output.
func mtBackground(t *testing.T, name string, args ...string) <-chan mtResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	res := make(chan mtResult, 1)
	go func() {
		err := cmd.Wait()
		cancel()
		res <- mtResult{err: err, out: out.String()}
	}()
	return res
}

type mtResult struct {
	err error
	out string
}

// mtWaitResult waits for a background command (watchdog: cmdTimeout).
func mtWaitResult(t *testing.T, c <-chan mtResult, what string) mtResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(cmdTimeout):
		t.Fatalf("%s did not finish within %v", what, cmdTimeout)
		return mtResult{}
	}
}

// mtMirrorUnderFio creates a mirror of a 128 MiB volume (16 MiB of random data) to target while
// verifying fio runs write during the first copy, waits for in-sync, runs one more verifying fio
// and checks the status. It returns the source daemon.
func mtMirrorUnderFio(t *testing.T, target string) *daemon {
	t.Helper()
	src := startDaemon(t)
	src.CreateVolume("vm1", "128M")
	uri := src.UnixURI("vm1")
	mtFill(t, uri, 16<<20, 51)
	loop := startMigFioLoop(t, uri, "32m")
	src.CLI("mirror", "create", "vm1", "--to", target, "--mode", "sync")
	m := mirrorWait(t, src, "vm1", "in-sync")
	seed := loop.check(t, "fio during the first copy")
	if r := migFio(t.Context(), uri, "32m", seed+1); r.err != nil {
		t.Fatalf("fio in sync: %v\n%s", r.err, r.out)
	}
	m = mirrorOf(t, src, "vm1")
	t.Logf("mirror to %s: %+v", target, m)
	if got, want := m.State, "in-sync"; got != want {
		t.Errorf("after fio in sync: state %s, want %s", got, want)
	}
	if !m.Connected || m.BytesToSync != 0 || m.BytesSent == 0 {
		t.Errorf("in sync after writes: connected %v, bytes_to_sync %d, bytes_sent %d; want true, 0, > 0",
			m.Connected, m.BytesToSync, m.BytesSent)
	}
	return src
}

// TestMirrorToQemuNBD (issue 5, Must show 1): the replica is a plain qemu-nbd (agentless); after
// the first copy under verifying fio and more fio in sync, the file qemu-nbd served is identical
// to the volume.
func TestMirrorToQemuNBD(t *testing.T) {
	q := startMtQemuNBD(t, t.TempDir(), mtVolSize)
	src := mtMirrorUnderFio(t, q.URI())
	src.Stop()
	q.Kill()
	sameImages(t, flatOf(src, "vm1"), q.file)
}

// TestMirrorToFile (issue 5, Must show 1): the replica is a flat file the daemon creates (as on an
// NFS mount); identical to the volume at the end.
func TestMirrorToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nfs", "vm1.flat")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	src := mtMirrorUnderFio(t, "file://"+path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the replica file was not created: %v", err)
	}
	if got, want := fi.Size(), int64(mtVolSize); got != want {
		t.Errorf("replica file %s is %d bytes, want %d", path, got, want)
	}
	src.Stop()
	sameImages(t, flatOf(src, "vm1"), path)
}

// TestMirrorBlockPolicy (issue 5, Must show 2): with --on-failure block, a write made while the
// qemu-nbd target is dead is not acknowledged, and the file lacks it, until the target is back;
// then it completes and the file holds it. With degrade, the same write completes at once (state
// degraded) and reaches the file after the restart and the resync.
func TestMirrorBlockPolicy(t *testing.T) {
	const off, n = 40<<20 + 4096, 1 << 20
	write := fmt.Sprintf("write -P 0x5a %d %d", off, n)
	for _, policy := range []string{"block", "degrade"} {
		t.Run(policy, func(t *testing.T) {
			q := startMtQemuNBD(t, t.TempDir(), mtVolSize)
			src := startDaemon(t)
			src.CreateVolume("vm1", "128M")
			uri := src.UnixURI("vm1")
			mtFill(t, uri, 8<<20, 52)
			src.CLI("mirror", "create", "vm1", "--to", q.URI(), "--on-failure", policy, "--wait")
			mirrorWait(t, src, "vm1", "in-sync")
			q.Kill()

			res := mtBackground(t, "qemu-io", "-f", "raw", "-c", write, uri)
			if policy == "block" {
				select {
				case r := <-res:
					t.Fatalf("policy block: the write finished while the target was down: %v\n%s", r.err, r.out)
				case <-time.After(time.Second):
				}
				if mtAll(mtReadAt(t, q.file, off, n), 0x5a) {
					t.Fatal("the file holds the pattern while qemu-nbd is down")
				}
				m := mirrorOf(t, src, "vm1")
				t.Logf("policy block, target down, write pending: %+v", m)
				if m.State == "in-sync" || m.Connected {
					t.Errorf("target down: state %s connected %v, want not in-sync and not connected", m.State, m.Connected)
				}
			} else {
				r := mtWaitResult(t, res, "qemu-io write (policy degrade, target down)")
				if r.err != nil || !strings.Contains(r.out, "wrote ") {
					t.Fatalf("policy degrade: the write failed while the target was down: %v\n%s", r.err, r.out)
				}
				m := mirrorWait(t, src, "vm1", "degraded")
				if m.BytesToSync == 0 || !m.Diverged {
					t.Errorf("degraded after a write: bytes_to_sync %d diverged %v, want > 0 and true", m.BytesToSync, m.Diverged)
				}
				if mtAll(mtReadAt(t, q.file, off, n), 0x5a) {
					t.Fatal("the file holds the pattern while qemu-nbd is down")
				}
			}

			q.start()
			if policy == "block" {
				r := mtWaitResult(t, res, "qemu-io write (policy block) after the target returned")
				if r.err != nil || !strings.Contains(r.out, "wrote ") {
					t.Fatalf("policy block: the write failed after the target returned: %v\n%s", r.err, r.out)
				}
				// Acknowledged: the replica has it now (qemu-nbd's page cache is the file's).
				if !mtAll(mtReadAt(t, q.file, off, n), 0x5a) {
					t.Fatal("policy block: the write was acknowledged but the file lacks it")
				}
			}
			m := mirrorWait(t, src, "vm1", "in-sync")
			if m.Diverged {
				t.Errorf("in sync again but diverged is still set: %+v", m)
			}
			if !mtAll(mtReadAt(t, q.file, off, n), 0x5a) {
				t.Fatal("in sync again, but the file lacks the write")
			}
			src.Stop()
			q.Stop()
			sameImages(t, flatOf(src, "vm1"), q.file)
		})
	}
}

// mtAcked reports whether the daemon acknowledged a crashWriter write (qemu-io printed its
// completion), even if the FLUSH after it failed.
func mtAcked(w crashWrite) bool { return w.ok || strings.Contains(w.out, "wrote ") }

// TestMirrorSourceKilled (issue 5, Must show 2): a volume mirrored to another daemon; while a
// write+flush loop runs, the source daemon gets SIGKILL. Every write the source acknowledged
// (qemu-io reported it done) is in the replica's flat file, read offline. Restarted, the source's
// mirror reconnects, resyncs and is in sync; both flats are identical.
func TestMirrorSourceKilled(t *testing.T) {
	src := startDaemonOpts(t, daemonOpts{Node: true, Name: "src"})
	dst := startDaemonOpts(t, daemonOpts{Node: true, Name: "dst"})
	pairNodes(t, src, dst)
	src.CreateVolume("cv", "64M")
	uri := src.UnixURI("cv")
	src.CLI("mirror", "create", "cv", "--to", "extrasphere://"+dst.nodeAddr()+"/cv", "--wait")
	m := newCrashModel()
	m.fill(t, uri, 61)
	m.write(t, uri, crashWrite{off: 30 << 20, n: 1 << 20, pat: 0xe1}, crashWrite{off: 4095, n: 70000, pat: 0xe2},
		crashWrite{off: crashVolSize - 1, n: 1, pat: 0xe3})
	mirrorWait(t, src, "cv", "in-sync")

	w := startCrashWriter(t.Context(), uri, 62, 1)
	time.Sleep(1500 * time.Millisecond) // placement only: the loop is writing when the source dies
	src.Kill()
	ws := w.wait()
	var acked, flushed int
	for i := range ws {
		if mtAcked(ws[i]) {
			acked++
			if ws[i].ok {
				flushed++
			}
			ws[i].ok = true
		}
	}
	m.apply(ws...)
	t.Logf("%d writes before the kill: %d acknowledged (%d also flushed)", len(ws), acked, flushed)
	if acked == 0 {
		t.Fatal("no write was acknowledged before the kill: nothing was tested")
	}

	dst.Stop()
	m.check(t, readFile(t, flatOf(dst, "cv")), "replica after SIGKILL of the source (read offline)")
	dst.Restart()

	src.Restart()
	ms := mirrorWait(t, src, "cv", "in-sync")
	t.Logf("after the restart: %+v", ms)
	// The source itself: every acknowledged write, and a write in flight at the kill is old or new.
	m.verify(t, src, "cv", "source after the restart")
	src.Stop()
	dst.Stop()
	sameImages(t, flatOf(src, "cv"), flatOf(dst, "cv"))
}
