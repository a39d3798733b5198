//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cloneChain is the part of `qemu-img info --backing-chain --output=json` the clone tests read.
type cloneChain []struct {
	Filename        string `json:"filename"`
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
}

// cloneInfo runs qemu-img info --backing-chain on top (the daemon must be stopped).
func cloneInfo(t *testing.T, top string) cloneChain {
	t.Helper()
	out := run(t, "qemu-img", "info", "--backing-chain", "--output=json", top)
	var c cloneChain
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("qemu-img info --backing-chain --output=json %s: %v:\n%s", top, err, out)
	}
	return c
}

// TestCloneUnderFio (issue 3, "Must show" 1): `clone ORIG TWIN` and `promote TWIN` while verifying fio
// jobs write to the origin (and, during promote, to the clone). The clone reads the content the
// origin had at the clone's instant; writes to either do not reach the other; the origin cannot be
// removed while the clone uses it (the error names the clone); with the daemon stopped qemu-img
// sees the clone's delta over ../orig/orig.vmdk and reads what the export served; after promote
// the origin is removed and the clone still reads right, from its own files only.
func TestCloneUnderFio(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("orig", "96M")
	ouri := d.UnixURI("orig")
	qemuIO(t, ouri, "write -P 0xc1 0 8M", "write -P 0xc2 3M 12345", "flush")

	oload := startMigFioLoop(t, ouri, "48m")
	waitConnected(t, d, "orig")
	time.Sleep(500 * time.Millisecond) // placement only: fio is writing when the clone is taken
	d.CLI("clone", "orig", "twin")
	curi := d.UnixURI("twin")
	// The clone's instant: the patterns are there; then the two diverge.
	qemuIO(t, curi, "read -P 0xc1 0 3M", "read -P 0xc2 3M 12345", "read -P 0xc1 3158073 5230535")
	qemuIO(t, curi, "write -P 0xd1 0 1M", "write -P 0xd2 5M 4097", "flush")
	qemuIO(t, ouri, "write -P 0xc3 7M 1M", "flush")
	qemuIO(t, ouri, "read -P 0xc1 0 3M", "read -P 0xc2 3M 12345", "read -P 0xc1 3158073 4181959", "read -P 0xc3 7M 1M")
	qemuIO(t, curi, "read -P 0xd1 0 1M", "read -P 0xc1 1M 2M", "read -P 0xc2 3M 12345",
		"read -P 0xc1 3158073 2084807", "read -P 0xd2 5M 4097", "read -P 0xc1 5246977 3141631")
	oload.check(t, "origin during clone")

	code, out := d.CLIStatus("volume", "rm", "orig")
	if code == 0 || !strings.Contains(out, "twin") {
		t.Fatalf("volume rm orig with a linked clone: exit %d, want a refusal naming the clone twin:\n%s", code, out)
	}
	if _, ok := listVolumes(t, d)["orig"]; !ok {
		t.Fatal("volume orig is gone after a refused rm")
	}

	// The chain on disk, daemon stopped: the clone's delta names ../orig/orig.vmdk and qemu-img
	// reads the clone exactly as the export served it.
	served := migExport(t, d, "twin")
	d.Stop()
	cdir := filepath.Join(migDefaultDS(d), "twin")
	top := migTopLayer(t, cdir, "twin")
	chain := cloneInfo(t, top)
	if len(chain) < 2 || !strings.HasPrefix(chain[0].BackingFilename, "../orig/") ||
		filepath.Dir(chain[len(chain)-1].Filename) != filepath.Join(migDefaultDS(d), "orig") {
		t.Errorf("qemu-img info --backing-chain %s: %+v, want the clone's delta over ../orig/...", top, chain)
	}
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", top, served)
	d.Restart()

	// Promote with fio writing to both.
	oload = startMigFioLoop(t, ouri, "48m")
	cload := startMigFioLoop(t, curi, "48m")
	waitConnected(t, d, "orig")
	waitConnected(t, d, "twin")
	time.Sleep(500 * time.Millisecond) // placement only
	d.CLI("promote", "twin")
	time.Sleep(300 * time.Millisecond)
	oload.check(t, "origin during promote")
	last := cload.check(t, "clone during promote")

	d.CLI("volume", "rm", "orig")
	if _, ok := listVolumes(t, d)["orig"]; ok {
		t.Fatal("volume orig still listed after rm")
	}
	qemuIO(t, curi, "read -P 0xd1 0 1M", "read -P 0xc1 1M 2M", "read -P 0xc2 3M 12345",
		"read -P 0xc1 3158073 2084807", "read -P 0xd2 5M 4097", "read -P 0xc1 5246977 3141631")
	if r := migFio(t.Context(), curi, "48m", last, "--verify_only"); r.err != nil || !strings.Contains(r.out, "io=48.0MiB") {
		t.Fatalf("fio --verify_only of the clone's run %d after promote and rm orig: %v:\n%s", last, r.err, r.out)
	}
	js := migWaitJobs(t, d)
	for _, j := range js {
		if j.State != "done" {
			t.Errorf("job %+v, want done", j)
		}
	}

	// Standalone on disk: no reference to the origin is left.
	served = migExport(t, d, "twin")
	d.Stop()
	top = migTopLayer(t, cdir, "twin")
	for _, l := range cloneInfo(t, top) {
		if filepath.Dir(l.Filename) != cdir {
			t.Errorf("after promote the clone's chain reads %s, outside %s", l.Filename, cdir)
		}
	}
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", top, served)
	d.Restart()
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", curi, served)
}

// TestCloneGuestBoot (issue 3, "Must show" 4): a TCG guest writes its pattern to the origin; a
// linked clone is taken; a second guest boots from the clone and reads the pattern back
// (ES-GUEST-READ-OK) while verifying fio jobs keep writing to the origin (clear of the pattern).
func TestCloneGuestBoot(t *testing.T) {
	kernel, initrd := buildGuest(t)
	d := startDaemon(t)
	d.CreateVolume("gorig", "64M")
	disk := func(export string) string {
		return fmt.Sprintf("driver=nbd,node-name=disk0,server.type=unix,server.path=%s,export=%s", d.nbdSock(), export)
	}
	if out := bootGuest(t, kernel, initrd, "write", disk("gorig")); !strings.Contains(out, "ES-GUEST-WRITE-OK") {
		t.Fatalf("guest on the origin did not report ES-GUEST-WRITE-OK:\n%s", out)
	}
	d.CLI("clone", "gorig", "gclone")

	load := startMigFioLoop(t, d.UnixURI("gorig"), "32m") // [16 MiB, 48 MiB): the pattern is [1 MiB, 5 MiB)
	waitConnected(t, d, "gorig")
	out := bootGuest(t, kernel, initrd, "read", disk("gclone"))
	if !strings.Contains(out, "ES-GUEST-READ-OK") {
		t.Fatalf("guest on the linked clone did not report ES-GUEST-READ-OK:\n%s", out)
	}
	runs := load.wait()
	for _, r := range runs {
		if r.err != nil {
			t.Fatalf("fio run %d on the origin: %v:\n%s", r.n, r.err, r.out)
		}
	}
	t.Logf("%d verifying fio runs on the origin passed while the guest ran on the clone", len(runs))

	// Both still hold the guest's pattern.
	want := guestPattern(t)
	for _, vol := range []string{"gorig", "gclone"} {
		got := readFile(t, migExport(t, d, vol))
		if i := firstDiff(got[guestPatternOff:guestPatternOff+guestPatternLen], want); i >= 0 {
			t.Errorf("%s: the guest's region differs from tests/guest/pattern.sh at disk offset %d", vol, guestPatternOff+i)
		}
	}
}
