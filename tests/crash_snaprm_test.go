//go:build integration

package tests

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestCrashRemoveOlderSnapshot (issue 3, "Must show" 2): removing a snapshot that is not the
// newest merges the frozen delta above it down (internal/engine/snaprm_frozen.go). A daemon armed
// with each of its failpoints removes s1 (whose layer is the flat) or s2 (a delta), alternating, and
// the first two steps with both, under a qemu-io write+flush loop and kills itself there. After the restart the removal
// has finished (resumed, or an orphan delta deleted), the other snapshots read exactly what the
// volume held when they were taken (through a linked clone of each), every flushed write reads
// back through the export, and qemu-img (daemon stopped) reads the chain the same way.
func TestCrashRemoveOlderSnapshot(t *testing.T) {
	fps := []string{"snaprm.after-copy", "snaprm.after-name", "snaprm.after-repoint", "snaprm.after-unlink"}
	for i, fp := range fps {
		// Each step once into the flat (s1) and once into a delta (s2), alternating (CI time).
		for _, victim := range []string{"s1", "s2"}[i%2 : i%2+1] {
			t.Run(fmt.Sprintf("%s/%s", fp, victim), func(t *testing.T) {
				crashRemoveOlder(t, fp, victim, uint64(500+i*2+len(victim)))
			})
		}
	}
	for i, fp := range fps[:2] { // the first two steps also with the other victim
		victim := []string{"s2", "s1"}[i%2]
		t.Run(fmt.Sprintf("%s/%s", fp, victim), func(t *testing.T) {
			crashRemoveOlder(t, fp, victim, uint64(600+i))
		})
	}
}

func crashRemoveOlder(t *testing.T, fp, victim string, seed uint64) {
	d := startArmed(t, fp)
	d.CreateVolume("co", "64M")
	uri := d.UnixURI("co")
	m := newCrashModel()
	m.fill(t, uri, seed)
	at := map[string][]byte{}
	for i, s := range []string{"s1", "s2", "s3"} {
		m.write(t, uri, crashWrite{off: int64(i)<<20 + 333, n: 2 << 20, pat: byte(0xa1 + i)},
			crashWrite{off: 50<<20 + int64(i)*65536, n: 65536, pat: byte(0xb1 + i)},
			crashWrite{off: crashVolSize - 1, n: 1, pat: byte(0xc1 + i)})
		d.CLI("snapshot", "create", "co", "--name", s)
		at[s] = bytes.Clone(m.data)
	}
	m.write(t, uri, crashWrite{off: 5 << 20, n: 4096, pat: 0xd1})

	w := startCrashWriter(t.Context(), uri, seed+1000, 1)
	time.Sleep(200 * time.Millisecond) // placement only
	rm := d.startCLI(t, "snapshot", "rm", "co", victim)
	d.waitDeath(t, fp)
	ws := w.wait()
	t.Logf("snapshot rm CLI: %s", <-rm)
	m.apply(ws...)

	d.Restart()
	checkRecoveryJobs(t, d, "co", fp != "snaprm.after-unlink" && fp != "snaprm.after-repoint")
	want := map[string][]string{"s1": {"s2", "s3"}, "s2": {"s1", "s3"}}[victim]
	if got := migSnapshots(t, d, "co"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("snapshots after recovery: %v, want %v", got, want)
	}
	dir := filepath.Join(migDefaultDS(d), "co")
	if n := len(deltaFiles(t, d, "co")); n != 2 {
		t.Errorf("after recovery %d delta files, want 2 (the merged one deleted)", n)
	}
	m.verify(t, d, "co", "after the crash at "+fp)
	for _, s := range want {
		c := "co-" + s
		d.CLI("clone", "co@"+s, c)
		if i := firstDiff(readFile(t, migExport(t, d, c)), at[s]); i >= 0 {
			t.Errorf("after the crash at %s: snapshot %s differs at byte %d from what the volume held", fp, s, i)
		}
		d.CLI("volume", "rm", c)
	}
	m.checkOffline(t, d, dir, "co")
}
