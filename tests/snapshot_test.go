//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/nbd"
)

// snapInfo is one entry of `snapshot list --json` / `snapshot create --json`.
type snapInfo struct {
	Volume  string    `json:"volume"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Layer   string    `json:"layer"`
}

// jobInfo is one entry of `job list --json`.
type jobInfo struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Volume string `json:"volume"`
	State  string `json:"state"`
	Error  string `json:"error"`
}

// snapList runs `snapshot list VOL --json`.
func snapList(t *testing.T, d *daemon, vol string) []snapInfo {
	t.Helper()
	var out []snapInfo
	if err := json.Unmarshal([]byte(d.CLI("snapshot", "list", vol, "--json")), &out); err != nil {
		t.Fatalf("snapshot list %s --json: %v", vol, err)
	}
	return out
}

// snapNames are the names of a snapshot list.
func snapNames(l []snapInfo) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Name
	}
	return out
}

// volDir is the volume's directory on the default datastore.
func volDir(d *daemon, vol string) string { return filepath.Join(d.dir, "datastores", "default", vol) }

// deltaFiles lists the volume's delta files (VOL-NNNNNN.vmdk), bottom first; the last is the top.
func deltaFiles(t *testing.T, d *daemon, vol string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(volDir(d, vol), vol+"-[0-9][0-9][0-9][0-9][0-9][0-9].vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

// snapFio runs one verifying fio job (4 KiB randwrite QD16 over 64 MiB, then the crc32c read-back)
// with the given seed; extra options are appended (e.g. --verify_only). It does not touch
// *testing.T: it runs in a goroutine.
func snapFio(ctx context.Context, uri string, seed int, extra ...string) fioRun {
	args := append(fioVerifyArgs("snap", uri), "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=64m",
		fmt.Sprintf("--randseed=%d", seed))
	return fioJob(ctx, seed, append(args, extra...)...)
}

// TestSnapshotUnderFio (issue 3, "Must show" 1): snapshot create, create again, rm of the newest
// (consolidation into a delta) and rm of the last one (consolidation into the flat) while
// back-to-back verifying fio runs write through the export. Every run must pass its crc32c verify,
// and after everything a verify-only pass re-reads the last run's blocks from the final chain.
func TestSnapshotUnderFio(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("sf", "80M")
	uri := d.UnixURI("sf")

	var stop atomic.Bool
	done := make(chan []fioRun, 1)
	go func() {
		var runs []fioRun
		for i := 1; i == 1 || !stop.Load(); i++ {
			r := snapFio(t.Context(), uri, i)
			runs = append(runs, r)
			if r.err != nil {
				break
			}
		}
		done <- runs
	}()
	waitConnected(t, d, "sf")

	// Placement only (nothing is timed): let fio write a while between the operations.
	type op struct {
		name string
		at   time.Time
	}
	var ops []op
	step := func(name string, args ...string) {
		time.Sleep(700 * time.Millisecond)
		ops = append(ops, op{name, time.Now()})
		d.CLI(args...)
	}
	step("create s1", "snapshot", "create", "sf", "--name", "s1")
	step("create s2", "snapshot", "create", "sf", "--name", "s2")
	step("create s3", "snapshot", "create", "sf", "--name", "s3")
	if got, want := snapNames(snapList(t, d, "sf")), []string{"s1", "s2", "s3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshots under fio: got %v, want %v", got, want)
	}
	if got := len(deltaFiles(t, d, "sf")); got != 3 {
		t.Errorf("delta files after three snapshots: got %d, want 3", got)
	}
	// Oldest first: s1 and then s2 are not the newest (a frozen delta merges into the flat), s3
	// is (the delta being written merges).
	step("rm s1", "snapshot", "rm", "sf", "s1")
	step("rm s2", "snapshot", "rm", "sf", "s2")
	step("rm s3", "snapshot", "rm", "sf", "s3")
	stop.Store(true)
	runs := <-done

	for _, r := range runs {
		var hit []string
		for _, o := range ops {
			if r.start.Before(o.at) && r.end.After(o.at) {
				hit = append(hit, o.name)
			}
		}
		t.Logf("fio run %d: %v, during it: %v", r.n, r.end.Sub(r.start).Round(time.Millisecond), hit)
		if r.err != nil {
			t.Errorf("fio run %d: %v:\n%s", r.n, r.err, r.out)
		}
	}
	if l := snapList(t, d, "sf"); len(l) != 0 {
		t.Errorf("snapshots left after rm s1, s2, s3: %v", snapNames(l))
	}
	if m := deltaFiles(t, d, "sf"); len(m) != 0 {
		t.Errorf("delta files after removing every snapshot: got %v, want none (all merged into the flat)", m)
	}
	var jobs []jobInfo
	if err := json.Unmarshal([]byte(d.CLI("job", "list", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Errorf("jobs: got %+v, want three done consolidate jobs", jobs)
	}
	for _, j := range jobs {
		if j.Kind != "consolidate" || j.State != "done" {
			t.Errorf("jobs: got %+v, want three done consolidate jobs", jobs)
		}
	}

	// The last run's blocks, read back from the chain as it is now (fio checks each block's header,
	// offset and crc32c); then what the export serves is copied, and after a restart both the
	// consolidated flat (qemu-img, daemon stopped) and the export must be identical to the copy.
	last := runs[len(runs)-1].n
	if r := snapFio(t.Context(), uri, last, "--verify_only"); r.err != nil || !strings.Contains(r.out, "io=64.0MiB") {
		t.Fatalf("fio --verify_only of run %d: %v, want 64 MiB read and verified:\n%s", last, r.err, r.out)
	}
	served := filepath.Join(t.TempDir(), "served.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, served)
	d.Stop()
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", filepath.Join(volDir(d, "sf"), "sf.vmdk"), served)
	d.Restart()
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", uri, served)
}

// chainModel is what a 32 MiB volume must hold, updated with each qemu-io command the test sends.
type chainModel []byte

// apply runs qemu-io commands on the export and applies them to the model. Commands: "w PAT OFF
// LEN" (write pattern), "z OFF LEN" (write zeroes), "d OFF LEN" (discard, which must read back as
// zeros in this volume).
func (m chainModel) apply(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	var qcmds []string
	for _, c := range cmds {
		var pat, off, n int
		switch c[0] {
		case 'w':
			fmt.Sscanf(c, "w %v %v %v", &pat, &off, &n)
			copy(m[off:off+n], bytes.Repeat([]byte{byte(pat)}, n))
			qcmds = append(qcmds, fmt.Sprintf("write -P %d %d %d", pat, off, n))
		case 'z', 'd':
			fmt.Sscanf(c[2:], "%v %v", &off, &n)
			clear(m[off : off+n])
			verb := map[byte]string{'z': "write -z", 'd': "discard"}[c[0]]
			qcmds = append(qcmds, fmt.Sprintf("%s %d %d", verb, off, n))
		}
	}
	qemuIO(t, uri, append(qcmds, "flush")...)
}

// rawOf converts an image (a chain layer, read by qemu with its backing chain) to raw bytes.
func rawOf(t *testing.T, format, src string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "layer.raw")
	run(t, "qemu-img", "convert", "-f", format, "-O", "raw", src, dst)
	return readFile(t, dst)
}

// TestSnapshotChainQemuImg (issue 3, "Must show" 1): with the daemon stopped, qemu-img reads the
// chain the daemon wrote: `info --backing-chain` lists the deltas and the base, the top compares
// identical with what the export served, each snapshot's layer holds exactly the volume's content
// at that snapshot (partial grains, write-zeroes and discard over older data included), and
// `qemu-img check` finds no error in any delta.
func TestSnapshotChainQemuImg(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("ch", "32M")
	uri := d.UnixURI("ch")
	const M, K = 1 << 20, 1 << 10
	m := make(chainModel, 32*M)

	m.apply(t, uri, "w 0x11 0 4194304", fmt.Sprintf("w 0x12 %d %d", 10*M, 100*K), fmt.Sprintf("w 0x13 %d %d", 32*M-512, 512))
	at1 := bytes.Clone(m)
	d.CLI("snapshot", "create", "ch", "--name", "s1")
	m.apply(t, uri,
		fmt.Sprintf("w 0x21 %d %d", 1*M+512, 4*K), // partial grain: the rest comes from the base
		fmt.Sprintf("w 0x22 %d %d", 20*M, 64*K),
		fmt.Sprintf("z %d %d", 2*M, 128*K), // zeroes over base data
		fmt.Sprintf("d %d %d", 3*M, 64*K),  // discard over base data: must not expose it
		fmt.Sprintf("w 0x23 %d %d", 10*M+50*K, 100*K))
	at2 := bytes.Clone(m)
	d.CLI("snapshot", "create", "ch", "--name", "s2")
	m.apply(t, uri,
		fmt.Sprintf("w 0x31 %d %d", 1*M+1024, 512), // partial grain over a partial grain of delta 1
		fmt.Sprintf("w 0x32 %d %d", 31*M, 1*M),     // up to the last byte
		fmt.Sprintf("z %d %d", 20*M+4*K, 8*K),      // zeroes inside a delta-1 grain
		fmt.Sprintf("d %d %d", 0, 64*K),            // discard over base data again
		fmt.Sprintf("w 0x33 %d %d", 3*M+512, 1024)) // data inside the discarded grain of delta 1

	served := filepath.Join(t.TempDir(), "served.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, served)
	if i := firstDiff(readFile(t, served), m); i >= 0 {
		t.Fatalf("the export serves wrong data at offset %d", i)
	}
	snaps := snapList(t, d, "ch")
	d.Stop()

	deltas := deltaFiles(t, d, "ch")
	if len(deltas) != 2 {
		t.Fatalf("delta files: got %v, want 2", deltas)
	}
	top, base := deltas[1], filepath.Join(volDir(d, "ch"), "ch.vmdk")
	info := run(t, "qemu-img", "info", "--backing-chain", top)
	var images []string
	for _, mm := range regexp.MustCompile(`(?m)^image: (.+)$`).FindAllStringSubmatch(info, -1) {
		images = append(images, mm[1])
	}
	if got, want := images, []string{top, deltas[0], base}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("qemu-img info --backing-chain %s: images %v, want %v:\n%s", top, got, want, info)
	}
	if got := strings.Count(info, "backing file: "); got != 2 {
		t.Errorf("qemu-img info --backing-chain: %d backing files, want 2:\n%s", got, info)
	}
	if out := run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", top, served); !strings.Contains(out, "Images are identical") {
		t.Errorf("qemu-img compare %s %s:\n%s", top, served, out)
	}
	for _, p := range deltas {
		if code, out := runStatus(t, "qemu-img", "check", "-f", "vmdk", p); code != 0 || !strings.Contains(out, "No errors were found") {
			t.Errorf("qemu-img check %s: exit %d:\n%s", p, code, out)
		}
	}

	// Each snapshot's layer, read by qemu through the chain below it, is the volume at that instant.
	if len(snaps) != 2 || snaps[0].Layer != base || snaps[1].Layer != deltas[0] {
		t.Fatalf("snapshot layers: got %+v, want s1 -> %s, s2 -> %s", snaps, base, deltas[0])
	}
	for i, want := range [][]byte{at1, at2} {
		if j := firstDiff(rawOf(t, "vmdk", snaps[i].Layer), want); j >= 0 {
			t.Errorf("snapshot %s (%s) read by qemu-img differs from the volume at that snapshot at offset %d",
				snaps[i].Name, snaps[i].Layer, j)
		}
	}

	d.Restart()
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", uri, served)
}

// TestSnapshotRevert: write A, snapshot, write B, revert -> the volume reads A again, the
// snapshot is still listed, and both hold across a daemon restart.
func TestSnapshotRevert(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("rv", "16M")
	uri := d.UnixURI("rv")
	qemuIO(t, uri, "write -P 0xaa 0 1M", "flush")
	d.CLI("snapshot", "create", "rv", "--name", "s1")
	qemuIO(t, uri, "write -P 0xbb 0 512k", "write -P 0xbb 8M 64k", "flush", "read -P 0xbb 0 512k", "read -P 0xaa 512k 512k")

	if out := d.CLI("snapshot", "revert", "rv", "s1"); out != "reverted volume rv to snapshot s1\n" {
		t.Errorf("snapshot revert output %q", out)
	}
	qemuIO(t, uri, "read -P 0xaa 0 1M", "read -P 0 8M 64k")
	if got := snapNames(snapList(t, d, "rv")); fmt.Sprint(got) != "[s1]" {
		t.Errorf("snapshots after revert: got %v, want [s1]", got)
	}
	// Writes after the revert go to a new delta over s1.
	qemuIO(t, uri, "write -P 0xcc 4M 4k", "flush")

	d.Stop()
	d.Restart()
	qemuIO(t, uri, "read -P 0xaa 0 1M", "read -P 0 8M 64k", "read -P 0xcc 4M 4k")
	if got := snapNames(snapList(t, d, "rv")); fmt.Sprint(got) != "[s1]" {
		t.Errorf("snapshots after restart: got %v, want [s1]", got)
	}

	// Reverting again drops the 0xcc write too.
	d.CLI("snapshot", "revert", "rv", "s1")
	qemuIO(t, uri, "read -P 0xaa 0 1M", "read -P 0 4M 4k")
}

// TestSnapshotConsistencyGroup (issue 3, "Must show" 3): a writer writes counter n to volume A, waits
// for the ack, then writes n to B, n++, while group snapshots of A and B are taken. In every group
// snapshot B's value is A's or one less: B's write n never appears without A's write n, and no
// write acknowledged before the snapshot on A is missing.
func TestSnapshotConsistencyGroup(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("cga", "1M")
	d.CreateVolume("cgb", "1M")
	ctx := t.Context()
	dial := func(vol string) *nbd.Client {
		tg, err := nbd.ParseURI(d.UnixURI(vol))
		if err != nil {
			t.Fatal(err)
		}
		c, err := nbd.Dial(ctx, tg, nbd.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial("cga"), dial("cgb")

	var stop atomic.Bool
	var written atomic.Uint64 // last n written to both
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		for n := uint64(1); !stop.Load(); n++ {
			binary.LittleEndian.PutUint64(buf, n)
			if err := a.WriteAt(ctx, buf, 0, 0); err != nil {
				errc <- fmt.Errorf("write %d to cga: %w", n, err)
				return
			}
			if err := b.WriteAt(ctx, buf, 0, 0); err != nil {
				errc <- fmt.Errorf("write %d to cgb: %w", n, err)
				return
			}
			written.Store(n)
		}
		errc <- nil
	}()
	for written.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const groups = 10
	for i := range groups {
		d.CLI("snapshot", "create", "cga", "cgb", "--name", fmt.Sprintf("g%d", i))
		time.Sleep(20 * time.Millisecond) // placement only: let the writer move on
	}
	stop.Store(true)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	la, lb := snapList(t, d, "cga"), snapList(t, d, "cgb")
	if len(la) != groups || len(lb) != groups {
		t.Fatalf("snapshots: cga %v, cgb %v, want %d each", snapNames(la), snapNames(lb), groups)
	}
	d.Stop()

	var prevA uint64
	for i := range groups {
		if la[i].Name != lb[i].Name || !la[i].Created.Equal(lb[i].Created) {
			t.Errorf("group snapshot %d: cga %+v and cgb %+v differ in name or instant", i, la[i], lb[i])
		}
		va, vb := layerCounter(t, la[i].Layer), layerCounter(t, lb[i].Layer)
		t.Logf("%s: cga=%d cgb=%d", la[i].Name, va, vb)
		if vb > va || va-vb > 1 {
			t.Errorf("group snapshot %s: cga holds %d, cgb holds %d; want cgb == cga or cga-1", la[i].Name, va, vb)
		}
		if va == 0 || va < prevA {
			t.Errorf("group snapshot %s: cga holds %d after %d in the previous one", la[i].Name, va, prevA)
		}
		prevA = va
	}
	t.Logf("writer reached n=%d", written.Load())
}

// layerCounter reads the little-endian counter at offset 0 of a chain layer with qemu-io (which
// follows the backing chain below the layer).
func layerCounter(t *testing.T, layer string) uint64 {
	t.Helper()
	out := run(t, "qemu-io", "-f", "vmdk", "-r", "-c", "read -v 0 8", layer)
	mm := regexp.MustCompile(`(?m)^00000000:((?:\s+[0-9a-f]{2}){8})`).FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("qemu-io read -v 0 8 %s: no hex dump:\n%s", layer, out)
	}
	raw, err := hex.DecodeString(strings.Join(strings.Fields(mm[1]), ""))
	if err != nil {
		t.Fatalf("qemu-io hex dump %q: %v", mm[1], err)
	}
	return binary.LittleEndian.Uint64(raw)
}

// TestSnapshotBadInput: wrong snapshot commands fail with exit 1 and one line that names the
// volume or snapshot, and change nothing.
func TestSnapshotBadInput(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("bi", "4M")
	d.CLI("snapshot", "create", "bi", "--name", "s1")
	d.CLI("snapshot", "create", "bi", "--name", "s2")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"UnknownVolume", []string{"snapshot", "create", "nosuch"}, []string{"nosuch"}},
		{"GroupWithUnknown", []string{"snapshot", "create", "bi", "nosuch", "--name", "g"}, []string{"nosuch"}},
		{"Duplicate", []string{"snapshot", "create", "bi", "--name", "s1"}, []string{"bi", "s1"}},
		{"BadName", []string{"snapshot", "create", "bi", "--name", "a/b"}, []string{"a/b"}},
		{"ListUnknownVolume", []string{"snapshot", "list", "nosuch"}, []string{"nosuch"}},
		{"RmUnknown", []string{"snapshot", "rm", "bi", "zz"}, []string{"bi", "zz"}},
		{"RevertUnknown", []string{"snapshot", "revert", "bi", "zz"}, []string{"bi", "zz"}},
		{"RevertUnknownVolume", []string{"snapshot", "revert", "nosuch", "s1"}, []string{"nosuch"}},
		{"JobUnknown", []string{"job", "show", "77"}, []string{"77"}},
		{"JobCancelUnknown", []string{"job", "cancel", "77"}, []string{"77"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := d.CLIStatus(tc.args...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != 1 || len(lines) != 1 || !strings.HasPrefix(out, "extrasphere: ") {
				t.Fatalf("extrasphere %s: exit %d, want 1 and one line \"extrasphere: ...\":\n%s", quoteArgs(tc.args), code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("extrasphere %s: %q does not name %q", quoteArgs(tc.args), out, w)
				}
			}
		})
	}
	if got := snapNames(snapList(t, d, "bi")); fmt.Sprint(got) != "[s1 s2]" {
		t.Errorf("snapshots after bad commands: got %v, want [s1 s2]", got)
	}
	if _, err := os.Stat(filepath.Join(volDir(d, "bi"), "bi.vmdk")); err != nil {
		t.Error(err)
	}
}
