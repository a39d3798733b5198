//go:build integration

package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// TestFaultFullDatastore: a thin volume on a 16 MiB tmpfs datastore is written until the
// filesystem is full. The client sees ENOSPC ("No space left on device"), nothing acknowledged and
// flushed before is lost, the daemon keeps serving the default datastore, and once space is
// discarded on the full volume, writes succeed again.
func TestFaultFullDatastore(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small")
	mountTmpfs(t, small, "16m") // before startDaemon: its cleanup (unmount) runs after the daemon's
	d := startDaemon(t)
	d.CLI("datastore", "add", "small", small)
	d.CreateVolume("full", "64M", "--datastore", "small")
	d.CreateVolume("other", "16M")
	if v := showVolume(t, d, "full"); v.Datastore != "small" || !strings.HasPrefix(v.FlatPath, small+"/") {
		t.Fatalf("volume full: datastore %q flat file %q, want on datastore small under %s", v.Datastore, v.FlatPath, small)
	}

	const chunk = 2 << 20
	const size = 64 << 20
	pattern := func(i int) int { return 0x10 + i }
	uri := d.UnixURI("full")
	failed := -1 // index of the chunk whose write failed
	for i := 0; i*chunk < size; i++ {
		code, out := runStatus(t, "qemu-io", "-f", "raw",
			"-c", fmt.Sprintf("write -P %#x %d %d", pattern(i), i*chunk, chunk), "-c", "flush", uri)
		if code == 0 && !strings.Contains(out, "failed") {
			continue
		}
		if !strings.Contains(out, "No space left on device") {
			t.Fatalf("write of chunk %d at %d failed, but not with ENOSPC: exit %d:\n%s", i, i*chunk, code, out)
		}
		failed = i
		break
	}
	if failed <= 0 {
		t.Fatalf("writing 64 MiB to a 16 MiB tmpfs: first failing chunk %d, want a failure after at least one chunk", failed)
	}
	failOff := failed * chunk
	t.Logf("ENOSPC at chunk %d (offset %d)", failed, failOff)

	// ENOSPC on TCP too, and the connection that got it is still usable for reads.
	code, out := runStatus(t, "qemu-io", "-f", "raw",
		"-c", fmt.Sprintf("write -P 0x7f %d %d", failOff, chunk), "-c", "read -P 0x10 0 4k", d.TCPURI("full"))
	if code == 0 || !strings.Contains(out, "No space left on device") || !strings.Contains(out, "read 4096/4096") {
		t.Errorf("write to the full datastore over TCP: exit %d, want ENOSPC and a good read after it:\n%s", code, out)
	}

	checkDaemonHealthy(t, d)
	qemuIO(t, d.UnixURI("other"), "write -P 0x5a 0 1M", "flush", "read -P 0x5a 0 1M")
	qemuIO(t, d.TCPURI("other"), "read -P 0x5a 0 1M")

	// Every chunk acknowledged and flushed before the failure reads back.
	readAcked := func() {
		t.Helper()
		var cmds []string
		for i := range failed {
			cmds = append(cmds, fmt.Sprintf("read -P %#x %d %d", pattern(i), i*chunk, chunk))
		}
		qemuIO(t, uri, cmds...)
	}
	readAcked()

	// Discarding all but the first chunk frees space on the datastore; writes succeed again, on
	// the offset that failed, and the first chunk is untouched.
	qemuIO(t, uri, fmt.Sprintf("discard %d %d", chunk, size-chunk))
	qemuIO(t, uri,
		fmt.Sprintf("write -P 0x66 %d %d", failOff, chunk), "flush",
		fmt.Sprintf("read -P 0x66 %d %d", failOff, chunk),
		fmt.Sprintf("read -P 0 %d %d", chunk, failOff-chunk),
		fmt.Sprintf("read -P %#x 0 %d", pattern(0), chunk))
	if v := showVolume(t, d, "full"); v.Status != "ok" {
		t.Errorf("volume full after ENOSPC: status %q (%s), want ok", v.Status, v.Error)
	}
	checkDaemonHealthy(t, d)
}

// TestFaultBrokenFilesAtRestart: with the daemon stopped, one volume's descriptor is overwritten
// with garbage, another's is emptied and a third loses its -flat.vmdk. The daemon restarts, serves
// the healthy volume, lists each broken one with an error naming the file and what is wrong,
// refuses their exports with an error reply (not a hang), and lets them be removed.
func TestFaultBrokenFilesAtRestart(t *testing.T) {
	d := startDaemon(t)
	for _, v := range []string{"good", "garbage", "empty", "noflat"} {
		d.CreateVolume(v, "16M")
	}
	qemuIO(t, d.UnixURI("good"), "write -P 0x42 0 1M", "flush")
	garbage, empty, noflat := showVolume(t, d, "garbage"), showVolume(t, d, "empty"), showVolume(t, d, "noflat")
	d.Stop()

	junk := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x17}, 200)
	if err := os.WriteFile(garbage.Path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(empty.Path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(noflat.FlatPath); err != nil {
		t.Fatal(err)
	}
	d.Restart()

	qemuIO(t, d.UnixURI("good"), "read -P 0x42 0 1M")
	qemuIO(t, d.TCPURI("good"), "read -P 0x42 0 1M", "write -P 0x43 1M 4k", "read -P 0x43 1M 4k")

	list := listVolumes(t, d)
	if v, ok := list["good"]; !ok || v.Status != "ok" || v.Error != "" {
		t.Errorf("volume list: good is %+v, want status ok", v)
	}
	broken := []struct {
		name  string
		file  string   // the file the error must name
		about []string // what the error must say is wrong (any of)
	}{
		{"garbage", garbage.Path, []string{"not a VMDK descriptor"}},
		{"empty", empty.Path, []string{"empty", "not a VMDK descriptor"}},
		{"noflat", noflat.FlatPath, []string{"no such file or directory"}},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			v, ok := list[b.name]
			if !ok {
				t.Fatalf("volume list after restart hides the broken volume %s (it has %v)", b.name, keys(list))
			}
			t.Logf("volume list: %s status %q error %q", b.name, v.Status, v.Error)
			if v.Status == "ok" || v.Error == "" {
				t.Errorf("broken volume %s: status %q error %q, want an error status and message", b.name, v.Status, v.Error)
			}
			if !strings.Contains(v.Error, b.file) || !containsAny(v.Error, b.about) {
				t.Errorf("error of %s: %q, want it to name %s and say %q", b.name, v.Error, b.file, b.about)
			}
			if strings.Contains(v.Error, "goroutine ") || strings.Contains(v.Error, "panic") {
				t.Errorf("error of %s looks like a crash: %q", b.name, v.Error)
			}
			show := d.CLI("volume", "show", b.name)
			if !strings.Contains(show, "Status:") || !strings.Contains(show, "error") || !strings.Contains(show, b.file) {
				t.Errorf("volume show %s lacks the error status or the file %s:\n%s", b.name, b.file, show)
			}

			// Its export answers GO with an error, on both transports, and the session goes on.
			for _, tr := range [][2]string{{"unix", d.nbdSock()}, {"tcp", d.tcpAddr()}} {
				r := nbdraw.Dial(t, tr[0], tr[1])
				r.ClientFlags(nbdraw.CFlagFixedNew)
				r.Option(nbdraw.OptGo, nbdraw.GoPayload(b.name))
				if res := r.FinalReply(nbdraw.OptGo); res.Final&(1<<31) == 0 {
					t.Errorf("GO %s over %s: reply %#x, want an error reply", b.name, tr[0], res.Final)
				} else if res.Final != nbdraw.RepErrUnknown {
					t.Logf("GO %s over %s: reply %#x %q (NBD_REP_ERR_UNKNOWN expected)", b.name, tr[0], res.Final, res.Message)
				}
				r.Option(nbdraw.OptGo, nbdraw.GoPayload("good"))
				if res := r.FinalReply(nbdraw.OptGo); res.Final != nbdraw.RepAck {
					t.Errorf("GO good after the refused GO %s: reply %#x %q", b.name, res.Final, res.Message)
				}
			}
			if code, out := runStatus(t, "nbdinfo", d.UnixURI(b.name)); code == 0 {
				t.Errorf("nbdinfo on broken volume %s succeeded:\n%s", b.name, out)
			}
		})
	}

	t.Run("ListExports", func(t *testing.T) {
		r := nbdraw.Dial(t, "unix", d.nbdSock())
		r.ClientFlags(nbdraw.CFlagFixedNew)
		r.Option(nbdraw.OptList, nil)
		if res := r.FinalReply(nbdraw.OptList); res.Final != nbdraw.RepAck || len(res.Servers) != 1 || res.Servers[0] != "good" {
			t.Errorf("NBD_OPT_LIST: reply %#x exports %q, want only good", res.Final, res.Servers)
		}
	})
	checkDaemonHealthy(t, d)

	// The broken volumes can be removed and their names reused.
	for _, b := range broken {
		d.CLI("volume", "rm", b.name)
	}
	if got := keys(listVolumes(t, d)); len(got) != 1 || got[0] != "good" {
		t.Errorf("volumes after removing the broken ones: %v, want [good]", got)
	}
	d.CreateVolume("noflat", "16M")
	qemuIO(t, d.UnixURI("noflat"), "read -P 0 0 1M", "write -P 0x44 0 4k", "read -P 0x44 0 4k")
}

// TestFaultMissingDescriptor: a volume directory that lost its descriptor but still holds its
// -flat.vmdk (the data) must not vanish without a word: after a restart it is listed with an
// error naming the missing descriptor, its data file is left alone, and its name is not reused.
func TestFaultMissingDescriptor(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("nodesc", "16M")
	qemuIO(t, d.UnixURI("nodesc"), "write -P 0x24 0 1M", "flush")
	v := showVolume(t, d, "nodesc")
	d.Stop()
	if err := os.Remove(v.Path); err != nil {
		t.Fatal(err)
	}
	d.Restart()

	// The data file is untouched, and the name is not handed out again over it.
	if got := readFile(t, v.FlatPath); len(got) != 16<<20 || got[0] != 0x24 || got[1<<20-1] != 0x24 {
		t.Errorf("the flat file of nodesc changed over the restart (%d bytes)", len(got))
	}
	if code, out := d.CLIStatus("volume", "create", "nodesc", "--size", "16M"); code != 1 || !strings.Contains(out, "nodesc") {
		t.Errorf("volume create over the orphaned flat file: exit %d, want 1 naming nodesc:\n%s", code, out)
	}
	list := listVolumes(t, d)
	got, ok := list["nodesc"]
	if !ok {
		t.Fatalf("volume list after restart hides nodesc, whose descriptor %s is missing but whose data %s is there (listed: %v)",
			v.Path, v.FlatPath, keys(list))
	}
	if got.Status == "ok" || !strings.Contains(got.Error, v.Path) {
		t.Errorf("nodesc: status %q error %q, want an error naming the missing descriptor %s", got.Status, got.Error, v.Path)
	}
	checkDaemonHealthy(t, d)
}

// volInfo is the part of `volume show --json` / `volume list --json` these tests read.
type volInfo struct {
	Name        string `json:"name"`
	Size        int64  `json:"size_bytes"`
	Datastore   string `json:"datastore"`
	Path        string `json:"path"`
	FlatPath    string `json:"flat_path"`
	Connections int    `json:"connections"`
	Status      string `json:"status"`
	Error       string `json:"error"`
}

func showVolume(t *testing.T, d *daemon, name string) volInfo {
	t.Helper()
	out := d.CLI("volume", "show", name, "--json")
	var v volInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("volume show %s --json: %v:\n%s", name, err, out)
	}
	return v
}

func listVolumes(t *testing.T, d *daemon) map[string]volInfo {
	t.Helper()
	out := d.CLI("volume", "list", "--json")
	var vs []volInfo
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("volume list --json: %v:\n%s", err, out)
	}
	m := map[string]volInfo{}
	for _, v := range vs {
		m[v.Name] = v
	}
	return m
}

// keys returns the names of a volume map, sorted.
func keys(m map[string]volInfo) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// mountTmpfs mounts a tmpfs of the given size on dir (created) and unmounts it when the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir)
	t.Cleanup(func() {
		// Not runStatus: t.Context() is already cancelled when cleanups run.
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// TestWrongCLIInput: every wrong command line gets a one-line error that names the culprit, exit
// status 1 (a refused operation) or 2 (a malformed command line), no stack trace, and changes
// nothing.
func TestWrongCLIInput(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("exists", "16M")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.raw")

	cases := []struct {
		name  string
		args  []string
		codes []int    // acceptable exit codes
		names []string // what the message must name (all of)
	}{
		{"SizeBadUnit", []string{"volume", "create", "v1", "--size", "12Q"}, []int{2}, []string{"12Q"}},
		{"SizeZero", []string{"volume", "create", "v1", "--size", "0"}, []int{2}, []string{`"0"`}},
		{"SizeNegative", []string{"volume", "create", "v1", "--size=-5M"}, []int{2}, []string{"-5M"}},
		{"SizeEmpty", []string{"volume", "create", "v1", "--size="}, []int{1, 2}, []string{"size"}},
		{"SizeMissing", []string{"volume", "create", "v1"}, []int{1, 2}, []string{"size"}},
		{"DuplicateName", []string{"volume", "create", "exists", "--size", "16M"}, []int{1}, []string{"exists", "already exists"}},
		{"NameDotDot", []string{"volume", "create", "../x", "--size", "16M"}, []int{1, 2}, []string{"../x"}},
		{"NameSlash", []string{"volume", "create", "a/b", "--size", "16M"}, []int{1, 2}, []string{"a/b"}},
		{"NameEmpty", []string{"volume", "create", "", "--size", "16M"}, []int{1, 2}, []string{"name"}},
		{"UnknownDatastore", []string{"volume", "create", "v1", "--size", "16M", "--datastore", "nosuchds"}, []int{1}, []string{"nosuchds"}},
		{"RmUnknown", []string{"volume", "rm", "nosuchvol"}, []int{1}, []string{"nosuchvol"}},
		{"ShowUnknown", []string{"volume", "show", "nosuchvol"}, []int{1}, []string{"nosuchvol"}},
		{"SetUnknown", []string{"volume", "set", "nosuchvol", "--read-only=true"}, []int{1}, []string{"nosuchvol"}},
		{"ImportMissingFile", []string{"volume", "import", "v1", missing}, []int{1}, []string{missing}},
		{"ImportWrongFormat", []string{"volume", "import", "v1", src, "--format", "wrongfmt"}, []int{1, 2}, []string{"wrongfmt"}},
		{"ImportOntoExisting", []string{"volume", "import", "exists", src}, []int{1}, []string{"exists"}},
		{"ExportUnknown", []string{"volume", "export", "nosuchvol", filepath.Join(dir, "out.raw")}, []int{1}, []string{"nosuchvol"}},
		{"AttachUnknown", []string{"attach", "nosuchvol", "--qemu"}, []int{1}, []string{"nosuchvol"}},
		{"DatastoreAddRegularFile", []string{"datastore", "add", "ds1", src}, []int{1}, []string{src}},
		{"DatastoreAddBadName", []string{"datastore", "add", "../ds", dir}, []int{1, 2}, []string{"../ds"}},
		{"DatastoreAddDuplicate", []string{"datastore", "add", "default", dir}, []int{1}, []string{"default"}},
		{"UnknownCommand", []string{"volume", "frobnicate"}, []int{1, 2}, []string{"frobnicate"}},
		{"UnknownFlag", []string{"volume", "list", "--bogus"}, []int{2}, []string{"--bogus"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := d.CLIStatus(c.args...)
			t.Logf("extrasphere %s: exit %d: %s", quoteArgs(c.args), code, strings.TrimSpace(out))
			if !slices.Contains(c.codes, code) {
				t.Errorf("exit %d, want one of %v:\n%s", code, c.codes, out)
			}
			for _, n := range c.names {
				if !strings.Contains(out, n) {
					t.Errorf("message does not name %q:\n%s", n, out)
				}
			}
			if !strings.HasPrefix(out, "extrasphere: ") {
				t.Errorf("message does not start with \"extrasphere: \":\n%s", out)
			}
			for _, bad := range []string{"goroutine ", "panic", ".go:", "runtime."} {
				if strings.Contains(out, bad) {
					t.Errorf("message contains %q, a stack trace:\n%s", bad, out)
				}
			}
		})
	}

	// Nothing was created by the refused commands, and the daemon is fine.
	if got := keys(listVolumes(t, d)); len(got) != 1 || got[0] != "exists" {
		t.Errorf("volumes after the refused commands: %v, want [exists]", got)
	}
	if out := d.CLI("datastore", "list"); strings.Contains(out, "ds1") {
		t.Errorf("datastore list shows the refused datastore ds1:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.raw")); err == nil {
		t.Errorf("volume export of an unknown volume created its target file")
	}
	checkDaemonHealthy(t, d)
}
