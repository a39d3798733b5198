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
	"testing"
	"time"
)

// guestTimeout bounds one TCG boot (about 3 s here); a watchdog, not a performance threshold.
const guestTimeout = 120 * time.Second

// The region the guest writes (tests/guest/pattern.sh).
const (
	guestPatternOff = 1 << 20
	guestPatternLen = 4 << 20
)

// TestGuest (issue 2, "Must show" 1): a TCG guest boots with the export as its virtio disk, writes
// the pattern with O_DIRECT + fsync, powers off; the host verifies the bytes; after a kill -9 and
// restart of the daemon a second boot (over TCP) reads them back.
func TestGuest(t *testing.T) {
	kernel, initrd := buildGuest(t)
	d := startDaemon(t)
	d.CreateVolume("vm", "16M")

	unixDisk := fmt.Sprintf("driver=nbd,node-name=disk0,server.type=unix,server.path=%s,export=vm", d.nbdSock())
	out := bootGuest(t, kernel, initrd, "write", unixDisk)
	if !strings.Contains(out, "ES-GUEST-WRITE-OK") {
		t.Fatalf("guest did not report ES-GUEST-WRITE-OK:\n%s", out)
	}

	want := guestPattern(t)
	img := filepath.Join(t.TempDir(), "vm.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.UnixURI("vm"), img)
	got := readFile(t, img)
	if got, want := len(got), 16<<20; got != want {
		t.Fatalf("exported image is %d bytes, want %d", got, want)
	}
	if i := firstDiff(got[guestPatternOff:guestPatternOff+guestPatternLen], want); i >= 0 {
		t.Errorf("guest-written region differs from tests/guest/pattern.sh at disk offset %d: got %q, want %q",
			guestPatternOff+i, got[guestPatternOff+i:min(guestPatternOff+i+16, len(got))], want[i:min(i+16, len(want))])
	}
	zero := make([]byte, len(got))
	if i := firstDiff(got[:guestPatternOff], zero[:guestPatternOff]); i >= 0 {
		t.Errorf("byte %d before the guest's region is not zero", i)
	}
	if i := firstDiff(got[guestPatternOff+guestPatternLen:], zero[guestPatternOff+guestPatternLen:]); i >= 0 {
		t.Errorf("byte %d after the guest's region is not zero", guestPatternOff+guestPatternLen+i)
	}

	d.Kill()
	d.Restart()
	tcpDisk := fmt.Sprintf("driver=nbd,node-name=disk0,server.type=inet,server.host=127.0.0.1,server.port=%d,export=vm", d.port)
	out = bootGuest(t, kernel, initrd, "read", tcpDisk)
	if !strings.Contains(out, "ES-GUEST-READ-OK") {
		t.Fatalf("guest did not report ES-GUEST-READ-OK:\n%s", out)
	}
}

// buildGuest builds (or reuses) the test guest with tests/guest/build.sh and returns the kernel and
// initrd paths. The cache dir is $ES_GUEST_DIR, else $EXTRASPHERE_GUEST_DIR, else
// $TMPDIR/extrasphere-guest.
func buildGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	dir := os.Getenv("ES_GUEST_DIR")
	if dir == "" {
		dir = os.Getenv("EXTRASPHERE_GUEST_DIR")
	}
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "extrasphere-guest")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, filepath.Join(root, "tests", "guest", "build.sh"), dir)
	lines := strings.Fields(out)
	if len(lines) < 2 {
		t.Fatalf("tests/guest/build.sh %s printed %q, want the kernel and initrd paths", dir, out)
	}
	return lines[len(lines)-2], lines[len(lines)-1]
}

// guestPattern is what the guest writes at guestPatternOff, from tests/guest/pattern.sh itself.
func guestPattern(t *testing.T) []byte {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(run(t, filepath.Join(root, "tests", "guest", "pattern.sh")))
	if got, want := len(b), guestPatternLen; got != want {
		t.Fatalf("pattern.sh printed %d bytes, want %d", got, want)
	}
	if got, want := string(b[:16]), fmt.Sprintf("ES-%012x\n", guestPatternOff); got != want {
		t.Fatalf("pattern.sh first record %q, want %q", got, want)
	}
	return b
}

// bootGuest boots the TCG guest with es.test=test and the given -blockdev as its virtio disk, and
// returns its serial console. QEMU must exit 0 (the guest powered off) and the guest must not report
// an error. extra are more QEMU arguments (a TLS -object).
func bootGuest(t *testing.T, kernel, initrd, test, blockdev string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guestTimeout)
	defer cancel()
	args := []string{"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "512",
		"-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 es.test=" + test,
		"-blockdev", blockdev, "-device", "virtio-blk-pci,drive=disk0"}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("guest es.test=%s did not power off within %v:\n%s", test, guestTimeout, out.String())
	}
	if err != nil || strings.Contains(out.String(), "ES-GUEST-ERROR") {
		t.Fatalf("qemu-system-x86_64 %s: %v:\n%s", quoteArgs(args), err, out.String())
	}
	return out.String()
}
