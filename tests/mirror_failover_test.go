//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// mtInfo is one row of `mirror status --json`, with the replica side's fields.
type mtInfo struct {
	Volume      string `json:"volume"`
	Role        string `json:"role"`
	Target      string `json:"target"`
	State       string `json:"state"`
	Connected   bool   `json:"connected"`
	BytesToSync int64  `json:"bytes_to_sync"`
	BytesCopied int64  `json:"bytes_copied"`
	LastError   string `json:"last_error"`
	Diverged    bool   `json:"diverged"`
	Source      string `json:"source"`
	Streams     int    `json:"streams"`
}

// mtStatus returns vol's rows of `mirror status VOL --json` on d.
func mtStatus(t *testing.T, d *daemon, vol string) []mtInfo {
	t.Helper()
	var ms []mtInfo
	out := d.CLI("mirror", "status", vol, "--json")
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("mirror status %s --json: %v:\n%s", vol, err, out)
	}
	return ms
}

// mtRole returns vol's row with the given role on d.
func mtRole(t *testing.T, d *daemon, vol, role string) mtInfo {
	t.Helper()
	ms := mtStatus(t, d, vol)
	for _, m := range ms {
		if m.Role == role {
			return m
		}
	}
	t.Fatalf("volume %s has no %s row in mirror status: %+v", vol, role, ms)
	return mtInfo{}
}

// mtPair starts two paired node daemons and a 128 MiB volume vm1 on src (16 MiB of random data),
// mirrored to dst and in sync.
func mtPair(t *testing.T) (src, dst *daemon) {
	t.Helper()
	src = startDaemonOpts(t, daemonOpts{Node: true, Name: "src"})
	dst = startDaemonOpts(t, daemonOpts{Node: true, Name: "dst"})
	pairNodes(t, src, dst)
	src.CreateVolume("vm1", "128M")
	mtFill(t, src.UnixURI("vm1"), 16<<20, 71)
	src.CLI("mirror", "create", "vm1", "--to", "extrasphere://"+dst.nodeAddr()+"/vm1", "--mode", "sync", "--wait")
	mirrorWait(t, src, "vm1", "in-sync")
	return src, dst
}

// mtFailover fails vm1 over on dst while src's stream is connected: refused without --force
// (named error), done with it.
func mtFailover(t *testing.T, src, dst *daemon) {
	t.Helper()
	r := mtRole(t, dst, "vm1", "replica")
	if r.Streams == 0 || r.State != "receiving" {
		t.Fatalf("replica on dst while src is in sync: %+v, want streams > 0, state receiving", r)
	}
	code, out := dst.CLIStatus("failover", "vm1")
	if code == 0 || !strings.Contains(out, "vm1") || !strings.Contains(out, "--force") || !strings.Contains(out, "src") {
		t.Fatalf("failover without --force while src is connected: exit %d, want != 0 and a message naming vm1, src and --force:\n%s", code, out)
	}
	if r := mtRole(t, dst, "vm1", "replica"); r.State != "receiving" {
		t.Fatalf("a refused failover changed the replica: %+v", r)
	}
	dst.CLI("failover", "vm1", "--force")
	if r := mtRole(t, dst, "vm1", "failed-over"); r.State != "writable" {
		t.Fatalf("after failover: %+v, want state writable", r)
	}
}

// mtDirtyLogEmpty polls until the dirty log of vol's mirror (CBT bitmap "mirror") is empty: the mirror's
// periodic checkpoint reset it. A watchdog bound, not a timing threshold.
func mtDirtyLogEmpty(t *testing.T, d *daemon, vol string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		dirty := int64(-1)
		for _, b := range cbtList(t, d, vol).Bitmaps {
			if b.Name == "mirror" {
				dirty = b.DirtyBytes
			}
		}
		switch {
		case dirty < 0:
			t.Fatalf("volume %s has no bitmap \"mirror\"", vol)
		case dirty == 0:
			return
		case time.Now().After(deadline):
			t.Fatalf("the dirty log of %s's mirror still holds %d bytes", vol, dirty)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mtPattern is a 1 MiB pattern write at off.
type mtPattern struct {
	off int64
	pat byte
}

func (p mtPattern) write() string { return fmt.Sprintf("write -P %#x %d 1M", p.pat, p.off) }
func (p mtPattern) read() string  { return fmt.Sprintf("read -P %#x %d 1M", p.pat, p.off) }

// TestMirrorFailoverFailback (issue 5, Must show 3): failover on the replica's node (refused
// without --force while the source is connected), writes there, the source's mirror refused
// with a message naming the failover, then failback sends only what changed: the reverse
// mirror's copied bytes are at least the 3 MiB written and far below the volume's size. Both
// flats are identical; the old source is now a read-only replica.
func TestMirrorFailoverFailback(t *testing.T) {
	src, dst := mtPair(t)
	// Trims in sync (a guest's discard) are no divergence (issue 9): nothing is recorded, so the
	// failback below is no split brain.
	qemuIO(t, src.UnixURI("vm1"), "discard 1M 2M", "discard 9M 64k", "write -P 0x5c 9M 4k", "flush")
	if m := mirrorWait(t, src, "vm1", "in-sync"); m.Diverged {
		t.Fatalf("src mirror after trims: %+v, want not diverged", m)
	}
	if b, err := os.ReadFile(src.logPath); err != nil || strings.Contains(string(b), "mirror degraded") {
		t.Fatalf("src's log after trims in sync (read error %v): want no \"mirror degraded\" line", err)
	}
	// The dirty log (bitmap "mirror") keeps what the replica may not have made durable until the
	// next checkpoint; a request that finds the replica gone marks it all as lacking, trims and
	// writes alike. Wait for that checkpoint, so the FLUSH below finds nothing lacking.
	mtDirtyLogEmpty(t, src, "vm1")
	mtFailover(t, src, dst)

	// The source notices at its next request to the replica (here a FLUSH, which is no write:
	// the source stays undiverged) and is refused for good.
	qemuIO(t, src.UnixURI("vm1"), "flush")
	m := mirrorWait(t, src, "vm1", "refused")
	if !strings.Contains(m.LastError, "failed over") || m.Diverged {
		t.Errorf("src mirror after failover: %+v, want last error naming the failover and not diverged", m)
	}

	changed := []mtPattern{{20 << 20, 0xd1}, {50<<20 + 4096, 0xd2}, {100 << 20, 0xd3}}
	var writes, reads []string
	for _, p := range changed {
		writes, reads = append(writes, p.write()), append(reads, p.read())
	}
	qemuIO(t, dst.UnixURI("vm1"), append(writes, "flush")...)

	dst.CLI("failback", "vm1", "--wait")
	back := mtRole(t, dst, "vm1", "source")
	const changedBytes, slack = 3 << 20, 16 << 20
	t.Logf("failback: reverse mirror copied %d bytes for %d bytes changed (volume %d): %+v",
		back.BytesCopied, changedBytes, int64(mtVolSize), back)
	if back.State != "in-sync" || back.BytesCopied < changedBytes || back.BytesCopied > changedBytes+slack {
		t.Errorf("reverse mirror: state %s, %d bytes copied; want in-sync and between %d and %d",
			back.State, back.BytesCopied, changedBytes, changedBytes+slack)
	}
	if r := mtRole(t, src, "vm1", "replica"); !strings.HasPrefix(r.Source, "dst/") {
		t.Errorf("src's vm1 after failback: %+v, want a replica of dst", r)
	}
	qemuIOReadOnly(t, src.UnixURI("vm1"), reads...)
	if code, out := runStatus(t, "qemu-io", "-f", "raw", "-c", "write -P 0xee 0 4096", src.UnixURI("vm1")); code == 0 && !strings.Contains(out, "failed") {
		t.Fatalf("a local client wrote into src's vm1, now a replica:\n%s", out)
	}
	dst.Stop()
	src.Stop()
	sameImages(t, flatOf(src, "vm1"), flatOf(dst, "vm1"))
}

// TestMirrorSplitBrain (issue 5, Must show 3): after a failover both sides take writes; failback
// is refused ("split brain") and neither side changes. The manual resolution: on the side to
// discard (src), remove the mirror and the volume; failback then makes it a full copy.
func TestMirrorSplitBrain(t *testing.T) {
	src, dst := mtPair(t)
	mtFailover(t, src, dst)

	onSrc, onDst := mtPattern{30 << 20, 0xa1}, mtPattern{60 << 20, 0xb1}
	// Acknowledged on src (policy degrade) though the replica refuses it: src diverges.
	qemuIO(t, src.UnixURI("vm1"), onSrc.write(), "flush")
	m := mirrorWait(t, src, "vm1", "refused")
	if !m.Diverged {
		t.Errorf("src acknowledged a write the failed-over replica lacks, but its mirror is not diverged: %+v", m)
	}
	qemuIO(t, dst.UnixURI("vm1"), onDst.write(), "flush")

	code, out := dst.CLIStatus("failback", "vm1")
	t.Logf("failback with both sides written: exit %d:\n%s", code, out)
	if code == 0 || !strings.Contains(out, "split brain") || !strings.Contains(out, "vm1") {
		t.Fatalf("failback after writes on both sides: exit %d, want != 0 and \"split brain\" naming vm1:\n%s", code, out)
	}
	zero := func(p mtPattern) string { return fmt.Sprintf("read -P 0 %d 1M", p.off) }
	qemuIO(t, src.UnixURI("vm1"), onSrc.read(), zero(onDst))
	qemuIO(t, dst.UnixURI("vm1"), onDst.read(), zero(onSrc))
	if r := mtRole(t, dst, "vm1", "failed-over"); r.State != "writable" {
		t.Errorf("dst after the refused failback: %+v, want still failed-over and writable", r)
	}
	if m := mirrorOf(t, src, "vm1"); m.State != "refused" || !m.Diverged {
		t.Errorf("src after the refused failback: %+v, want its mirror still refused and diverged", m)
	}

	// The resolution: keep dst's data. Save src's (here: export it), then remove it there.
	saved := filepath.Join(t.TempDir(), "src-vm1.raw")
	src.CLI("volume", "export", "vm1", saved)
	if code, out := src.CLIStatus("volume", "rm", "vm1"); code == 0 {
		t.Fatalf("volume rm of a volume with a mirror succeeded:\n%s", out)
	}
	src.CLI("mirror", "rm", "vm1")
	src.CLI("volume", "rm", "vm1")
	dst.CLI("failback", "vm1", "--wait")
	back := mtRole(t, dst, "vm1", "source")
	t.Logf("failback into the removed volume: %+v", back)
	if back.State != "in-sync" || back.BytesCopied < mtVolSize {
		t.Errorf("failback into a removed volume: state %s, %d bytes copied; want in-sync and a full copy (%d)",
			back.State, back.BytesCopied, int64(mtVolSize))
	}
	qemuIOReadOnly(t, src.UnixURI("vm1"), onDst.read(), zero(onSrc))
	dst.Stop()
	src.Stop()
	sameImages(t, flatOf(src, "vm1"), flatOf(dst, "vm1"))
	got := mtReadAt(t, saved, onSrc.off, 1<<20)
	if !mtAll(got, onSrc.pat) {
		t.Errorf("the saved copy of src's vm1 lacks src's write")
	}
}

// mtMirrorSummary is what a bad request must not change: every mirror row's volume, role,
// target and state.
func mtMirrorSummary(t *testing.T, d *daemon) []string {
	t.Helper()
	var ms []mtInfo
	out := d.CLI("mirror", "status", "--json")
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("mirror status --json: %v:\n%s", err, out)
	}
	var s []string
	for _, m := range ms {
		s = append(s, strings.Join([]string{m.Volume, m.Role, m.Target, m.State}, " "))
	}
	return s
}

// TestMirrorBadInput (issue 5): each mistake is refused with exit 1 and a message that names the
// volume (or target) and says what to do; nothing changes: no mirror, no replica file, no
// dirty-log bitmap appears.
func TestMirrorBadInput(t *testing.T) {
	d := startDaemonOpts(t, daemonOpts{Node: true, Name: "n1"})
	d.CreateVolume("vm1", "64M")
	d.CreateVolume("vm2", "64M")
	dir := t.TempDir()
	d.CLI("mirror", "create", "vm1", "--to", "file://"+filepath.Join(dir, "vm1.flat"), "--wait")
	before := mtMirrorSummary(t, d)
	file := "file://" + filepath.Join(dir, "vm2.flat")
	unpaired := fmt.Sprintf("extrasphere://127.0.0.1:%d/vm2", freePort(t))

	for _, c := range []struct {
		name string
		args []string
		want []string // substrings of the output, all required
	}{
		{"missing volume", []string{"mirror", "create", "nosuch", "--to", file}, []string{"nosuch", "does not exist", "volume list"}},
		{"unknown scheme", []string{"mirror", "create", "vm2", "--to", "ftp://host/vm2"}, []string{"vm2", "unknown scheme", "want extrasphere"}},
		{"no target", []string{"mirror", "create", "vm2", "--to", "not a url"}, []string{"vm2", "want"}},
		{"plain tcp to another host", []string{"mirror", "create", "vm2", "--to", "nbd://10.213.250.1:10809/vm2"}, []string{"vm2", "--insecure", "extrasphere://"}},
		{"unpaired node", []string{"mirror", "create", "vm2", "--to", unpaired}, []string{"vm2", "no paired node", "node pair"}},
		{"second mirror", []string{"mirror", "create", "vm1", "--to", file}, []string{"vm1", "already has a mirror", "mirror rm vm1"}},
		{"bad policy", []string{"mirror", "create", "vm2", "--to", file, "--on-failure", "sometimes"}, []string{"vm2", "sometimes", "degrade or block"}},
		{"async mode", []string{"mirror", "create", "vm2", "--to", file, "--mode", "async"}, []string{"vm2", "async", "--mode sync"}},
		{"rm without mirror", []string{"mirror", "rm", "vm2"}, []string{"vm2", "has no mirror", "mirror status"}},
		{"pause without mirror", []string{"mirror", "pause", "vm2"}, []string{"vm2", "has no mirror"}},
		{"status without mirror", []string{"mirror", "status", "vm2"}, []string{"vm2", "mirror create vm2"}},
		{"failover of a non-replica", []string{"failover", "vm2"}, []string{"vm2", "not a replica", "node that holds the replica"}},
		{"failover of a mirrored source", []string{"failover", "vm1", "--force"}, []string{"vm1", "not a replica"}},
		{"failover of a missing volume", []string{"failover", "nosuch"}, []string{"nosuch", "does not exist"}},
		{"failback never failed over", []string{"failback", "vm2"}, []string{"vm2", "not failed over", "where failover ran"}},
		{"failback of a mirrored source", []string{"failback", "vm1"}, []string{"vm1", "not failed over"}},
	} {
		code, out := d.CLIStatus(c.args...)
		if code != 1 {
			t.Errorf("%s: extrasphere %s: exit %d, want 1:\n%s", c.name, quoteArgs(c.args), code, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: extrasphere %s: output lacks %q:\n%s", c.name, quoteArgs(c.args), w, out)
			}
		}
	}

	if after := mtMirrorSummary(t, d); !slices.Equal(after, before) {
		t.Errorf("mirrors after the bad requests: %q, want %q", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "vm2.flat")); !os.IsNotExist(err) {
		t.Errorf("a refused mirror create left the target file vm2.flat (stat: %v)", err)
	}
	if out := d.CLI("cbt", "list", "vm2", "--json"); strings.Contains(out, `"mirror"`) {
		t.Errorf("a refused mirror create left its dirty log (bitmap \"mirror\") on vm2:\n%s", out)
	}
	if got := mtMirrorSummary(t, d); len(got) != 1 || !strings.HasPrefix(got[0], "vm1 source ") {
		t.Errorf("mirrors: %q, want only vm1's", got)
	}
	// vm2 still takes a mirror.
	d.CLI("mirror", "create", "vm2", "--to", file, "--wait")
}
