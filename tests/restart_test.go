//go:build integration

package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRestartUnderLoad (issue 2, "Must show" 2b): the daemon is restarted with SIGTERM and with
// SIGKILL under a verifying fio load that goes through QEMU's own NBD client with reconnect-delay
// (qemu-storage-daemon re-exports the volume); every fio run must finish with no error and verify.
func TestRestartUnderLoad(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("load", "64M")

	t.Run("Attach", func(t *testing.T) {
		if out := d.CLI("attach", "load", "--qemu"); !strings.Contains(out, "reconnect-delay") {
			t.Errorf("attach --qemu lacks reconnect-delay:\n%s", out)
		}
		if out := d.CLI("attach", "load", "--qemu", "--tcp"); !strings.Contains(out, "reconnect-delay") ||
			!strings.Contains(out, fmt.Sprint(d.port)) {
			t.Errorf("attach --qemu --tcp lacks reconnect-delay or port %d:\n%s", d.port, out)
		}
		if out := d.CLI("attach", "load", "--libvirt"); !strings.Contains(out, "<reconnect delay=") {
			t.Errorf("attach --libvirt lacks <reconnect delay=:\n%s", out)
		}
	})

	qsdSock := startQSD(t, d, "load")
	loadURI := "nbd+unix:///load?socket=" + qsdSock

	// The load: back-to-back verifying fio runs until told to stop, so a restart always lands on
	// a run (or, rarely, between two, when the next connect goes through QEMU's reconnect).
	var stop atomic.Bool
	warm := make(chan struct{}) // closed when the first run has passed (or failed) and the next begins
	done := make(chan []fioRun, 1)
	go func() {
		var runs []fioRun
		defer func() { done <- runs }()
		for i := 0; i == 0 || !stop.Load(); i++ {
			if i == 1 {
				close(warm)
			}
			runs = append(runs, runFio(t.Context(), loadURI, i))
			if runs[i].err != nil {
				break
			}
		}
		if len(runs) == 1 {
			close(warm)
		}
	}()

	<-warm
	time.Sleep(time.Second) // let the run be well under way; placement only, nothing is timed
	termAt := time.Now()
	d.Stop()
	d.Restart()
	time.Sleep(2 * time.Second)
	killAt := time.Now()
	d.Kill()
	d.Restart()
	time.Sleep(2 * time.Second)
	stop.Store(true)

	runs := <-done
	for _, r := range runs {
		if r.err != nil {
			t.Errorf("fio run %d through QEMU's reconnecting NBD client: %v:\n%s", r.n, r.err, r.out)
		}
	}
	for _, r := range runs { // which runs the restarts landed on, for the record
		var hit []string
		for _, e := range []struct {
			sig string
			at  time.Time
		}{{"SIGTERM", termAt}, {"SIGKILL", killAt}} {
			if r.start.Before(e.at) && r.end.After(e.at) {
				hit = append(hit, e.sig)
			}
		}
		t.Logf("fio run %d: %v, restarts during it: %v", r.n, r.end.Sub(r.start).Round(time.Millisecond), hit)
	}
	// QEMU's client is still attached, and reconnected: a new client gets through it.
	qemuIO(t, loadURI, "write -P 0x5e 0 64k", "flush", "read -P 0x5e 0 64k")
	qemuIO(t, d.UnixURI("load"), "read -P 0x5e 0 64k")
}

// fioRun is the outcome of one verifying fio job.
type fioRun struct {
	n          int
	start, end time.Time
	out        string
	err        error
}

// fioJob runs one verifying fio job (fioVerifyArgs plus args) and reports
// its outcome as run n. It does not touch *testing.T: it runs in goroutines.
func fioJob(ctx context.Context, n int, args ...string) fioRun {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fio", args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err == nil && !strings.Contains(out.String(), "err= 0") {
		err = fmt.Errorf("fio reported an error")
	}
	return fioRun{n: n, start: start, end: time.Now(), out: out.String(), err: err}
}

// runFio runs one verifying 4 KiB randwrite QD32 job over 32 MiB (write everything, then read
// everything back and check crc32c).
func runFio(ctx context.Context, uri string, n int) fioRun {
	return fioJob(ctx, n, append(fioVerifyArgs("load", uri),
		"--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=32m", fmt.Sprintf("--randseed=%d", n+1))...)
}

// startQSD runs qemu-storage-daemon with an NBD client blockdev (reconnect-delay=20) on the
// daemon's export, re-exported on its own unix socket, which it returns.
func startQSD(t *testing.T, d *daemon, vol string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "qsd.sock")
	logPath := filepath.Join(dir, "qsd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("qemu-storage-daemon",
		"--blockdev", fmt.Sprintf("driver=nbd,node-name=n0,server.type=unix,server.path=%s,export=%s,reconnect-delay=20",
			d.nbdSock(), vol),
		"--nbd-server", "addr.type=unix,addr.path="+sock,
		"--export", "type=nbd,id=e0,node-name=n0,name="+vol+",writable=on")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-storage-daemon: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error // written before exited is closed
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("qemu-storage-daemon log:\n%s", b)
		}
	})
	uri := "nbd+unix:///" + vol + "?socket=" + sock
	deadline := time.Now().Add(readyTimeout)
	for {
		if code, _ := runStatus(t, "nbdinfo", "--size", uri); code == 0 {
			return sock
		}
		select {
		case <-exited:
			t.Fatalf("qemu-storage-daemon exited: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-storage-daemon did not serve %s within %v", uri, readyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
