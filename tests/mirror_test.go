//go:build integration

package tests

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

// mirrorStatus is one row of `mirror status --json`.
type mirrorStatus struct {
	Volume      string `json:"volume"`
	Role        string `json:"role"`
	State       string `json:"state"`
	Connected   bool   `json:"connected"`
	BytesToSync int64  `json:"bytes_to_sync"`
	BytesSent   int64  `json:"bytes_sent"`
	BytesCopied int64  `json:"bytes_copied"`
	LastError   string `json:"last_error"`
	Diverged    bool   `json:"diverged"`
}

// mirrorOf returns the source-side status of vol's mirror on d.
func mirrorOf(t *testing.T, d *daemon, vol string) mirrorStatus {
	t.Helper()
	var ms []mirrorStatus
	if err := json.Unmarshal([]byte(d.CLI("mirror", "status", vol, "--json")), &ms); err != nil {
		t.Fatalf("mirror status --json: %v", err)
	}
	for _, m := range ms {
		if m.Role == "source" {
			return m
		}
	}
	t.Fatalf("volume %s has no mirror: %+v", vol, ms)
	return mirrorStatus{}
}

// mirrorWait polls until vol's mirror is in state want. A watchdog bound, not a timing threshold.
func mirrorWait(t *testing.T, d *daemon, vol, want string) mirrorStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := mirrorOf(t, d, vol)
		if m.State == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror of %s is %s, want %s (last error %q)", vol, m.State, want, m.LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flatOf is the raw file of a volume on its default datastore (qemu-img reads it offline).
func flatOf(d *daemon, vol string) string {
	return filepath.Join(d.dir, "datastores", "default", vol, vol+"-flat.vmdk")
}

// sameImages fails unless qemu-img compare finds a and b identical.
func sameImages(t *testing.T, a, b string) {
	t.Helper()
	if code, out := runStatus(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", a, b); code != 0 {
		t.Fatalf("qemu-img compare %s %s: exit %d:\n%s", a, b, code, out)
	}
}

// TestMirrorToNode (issue 5, Must show 1): a volume mirrored to another daemon, reached over a
// veth link into a network namespace, with verifying fio writing during the first copy and after.
// The replica is read-only to local clients there; qemu-img compare finds both sides identical.
func TestMirrorToNode(t *testing.T) {
	link := newNetLink(t)
	src := startDaemonOpts(t, daemonOpts{Node: true, Name: "src", Host: link.HostIP})
	dst := startDaemonOpts(t, daemonOpts{Node: true, Name: "dst", Host: link.NSIP, NetNS: link.NS})
	pairNodes(t, src, dst)
	src.CreateVolume("vm1", "256M")
	loop := startMigFioLoop(t, src.UnixURI("vm1"), "64m")
	src.CLI("mirror", "create", "vm1", "--to", "extrasphere://"+dst.nodeAddr()+"/vm1", "--mode", "sync")
	mirrorWait(t, src, "vm1", "in-sync")
	seed := loop.check(t, "fio during the first copy")
	if r := migFio(t.Context(), src.UnixURI("vm1"), "64m", seed+1); r.err != nil {
		t.Fatalf("fio in sync: %v\n%s", r.err, r.out)
	}
	if code, out := runStatus(t, "qemu-io", "-f", "raw", "-c", "write 0 4096", dst.UnixURI("vm1")); code == 0 {
		t.Fatalf("a local client wrote into the replica:\n%s", out)
	}
	src.Stop()
	dst.Stop()
	sameImages(t, flatOf(src, "vm1"), flatOf(dst, "vm1"))
}
