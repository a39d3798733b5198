//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMirrorGuestFailover (issue 5, Must show 4): a TCG guest on the source node writes the
// pattern of tests/guest/pattern.sh (O_DIRECT, fsync) into a volume mirrored in sync to a second
// node, while verifying fio writes elsewhere in the volume; the guest powers off; the source node
// is shut down; `failover` on the second node makes the replica writable there, and a second TCG
// guest attached to it reads back and verifies the first guest's bytes. Both flats are identical
// and the replica's holds the pattern.
func TestMirrorGuestFailover(t *testing.T) {
	kernel, initrd := buildGuest(t)
	src := startDaemonOpts(t, daemonOpts{Node: true, Name: "src"})
	dst := startDaemonOpts(t, daemonOpts{Node: true, Name: "dst"})
	pairNodes(t, src, dst)
	src.CreateVolume("gv", "64M")
	src.CLI("mirror", "create", "gv", "--to", "extrasphere://"+dst.nodeAddr()+"/gv", "--mode", "sync")
	mirrorWait(t, src, "gv", "in-sync")

	loop := startMigFioLoop(t, src.UnixURI("gv"), "16m")
	disk := fmt.Sprintf("driver=nbd,node-name=disk0,server.type=unix,server.path=%s,export=gv", src.nbdSock())
	if out := bootGuest(t, kernel, initrd, "write", disk); !strings.Contains(out, "ES-GUEST-WRITE-OK") {
		t.Fatalf("source guest did not report ES-GUEST-WRITE-OK:\n%s", out)
	}
	loop.check(t, "fio beside the source guest")
	if m := mirrorOf(t, src, "gv"); m.State != "in-sync" || m.BytesToSync != 0 {
		t.Fatalf("after the guest powered off: mirror %s with %d bytes to sync, want in-sync and nothing to sync", m.State, m.BytesToSync)
	}

	// The source node goes away (planned: its VM is off); the replica sees its stream end.
	src.Stop()
	mfWaitReplica(t, dst, "gv", "replica", "idle")
	if code, out := dst.CLIStatus("failover", "gv"); code != 0 {
		t.Fatalf("failover gv on the target: exit %d:\n%s", code, out)
	}
	mfWaitReplica(t, dst, "gv", "failed-over", "writable")

	disk = fmt.Sprintf("driver=nbd,node-name=disk0,server.type=unix,server.path=%s,export=gv", dst.nbdSock())
	if out := bootGuest(t, kernel, initrd, "read", disk); !strings.Contains(out, "ES-GUEST-READ-OK") {
		t.Fatalf("guest on the failed-over replica did not report ES-GUEST-READ-OK:\n%s", out)
	}

	dst.Stop()
	sameImages(t, flatOf(src, "gv"), flatOf(dst, "gv"))
	want := guestPattern(t)
	got := mtReadAt(t, flatOf(dst, "gv"), guestPatternOff, guestPatternLen)
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("the replica's flat differs from the guest's pattern at disk offset %d", guestPatternOff+i)
	}
}

// mfReplica is the replica-side row of `mirror status --json`.
type mfReplica struct {
	Role    string `json:"role"`
	State   string `json:"state"`
	Source  string `json:"source"`
	Streams int    `json:"streams"`
}

// mfWaitReplica polls `mirror status VOL --json` on the replica's node until vol has role and
// state. A watchdog bound, not a timing threshold.
func mfWaitReplica(t *testing.T, d *daemon, vol, role, state string) mfReplica {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := d.CLI("mirror", "status", vol, "--json")
		var rs []mfReplica
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatalf("mirror status %s --json: %v:\n%s", vol, err, out)
		}
		for _, r := range rs {
			if r.Role == role && r.State == state {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume %s on the replica's node: %+v, want role %s state %s", vol, rs, role, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
