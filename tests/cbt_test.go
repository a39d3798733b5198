//go:build integration

package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/nbd"
)

// Changed-block tracking (issue 4, "Must show" 1): what `nbdinfo --map=qemu:dirty-bitmap:NAME`
// reads is exactly the 64 KiB blocks written (after a clean run), and after kill -9 it covers
// every acknowledged write.

const cbtBlock = 64 << 10

// cbtMap reads bitmap's dirty extents with nbdinfo --map=qemu:dirty-bitmap:NAME --json. The map
// must cover the export contiguously with only the flags 0 (clean) and 1 (dirty).
func cbtMap(t *testing.T, uri, bitmap string, size int64) []extent {
	t.Helper()
	out := run(t, "nbdinfo", "--map=qemu:dirty-bitmap:"+bitmap, "--json", uri)
	var m []struct {
		Offset, Length int64
		Type           uint32
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("nbdinfo --map=qemu:dirty-bitmap:%s --json: %v:\n%s", bitmap, err, out)
	}
	var dirty []extent
	var next int64
	for _, e := range m {
		if e.Offset != next {
			t.Fatalf("dirty map of %s: gap before %d:\n%s", bitmap, e.Offset, out)
		}
		next = e.Offset + e.Length
		switch e.Type {
		case 1:
			dirty = append(dirty, extent{e.Offset, e.Length})
		case 0:
		default:
			t.Fatalf("dirty map of %s: extent at %d has flags %d, want 0 or 1:\n%s", bitmap, e.Offset, e.Type, out)
		}
	}
	if next != size {
		t.Fatalf("dirty map of %s covers %d bytes, want %d", bitmap, next, size)
	}
	return mergeExtents(dirty)
}

// cbtBlocks turns written byte ranges into the merged extents of the 64 KiB blocks they touch,
// the last one cut at the volume's end.
func cbtBlocks(ranges []extent, size int64) []extent {
	set := map[int64]bool{}
	for _, r := range ranges {
		for b := r.Off / cbtBlock; b <= (r.Off+r.Len-1)/cbtBlock; b++ {
			set[b] = true
		}
	}
	var out []extent
	for _, b := range slices.Sorted(maps.Keys(set)) {
		out = append(out, extent{b * cbtBlock, min(cbtBlock, size-b*cbtBlock)})
	}
	return mergeExtents(out)
}

// cbtCovers reports the first range of want not inside the dirty extents, if any.
func cbtCovers(dirty []extent, want []extent) (extent, bool) {
	for _, w := range want {
		ok := false
		for _, d := range dirty {
			if w.Off >= d.Off && w.Off+w.Len <= d.Off+d.Len {
				ok = true
				break
			}
		}
		if !ok {
			return w, false
		}
	}
	return extent{}, true
}

// cbtInfo is `cbt list VOL --json`.
type cbtInfo struct {
	Bitmaps []struct {
		Name        string `json:"name"`
		MetaContext string `json:"meta_context"`
		DirtyBytes  int64  `json:"dirty_bytes"`
	} `json:"bitmaps"`
	Recovered bool     `json:"recovered"`
	Problems  []string `json:"problems"`
}

func cbtList(t *testing.T, d *daemon, vol string) cbtInfo {
	t.Helper()
	var in cbtInfo
	out := d.CLI("cbt", "list", vol, "--json")
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("cbt list --json: %v:\n%s", err, out)
	}
	return in
}

// fioWrites parses a fio iolog (version 3) into the write and trim ranges it issued.
func fioWrites(t *testing.T, path string) []extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []extent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 || (fs[2] != "write" && fs[2] != "trim") {
			continue
		}
		off, err1 := strconv.ParseInt(fs[3], 10, 64)
		n, err2 := strconv.ParseInt(fs[4], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("fio iolog line %q", sc.Text())
		}
		out = append(out, extent{off, n})
	}
	if len(out) == 0 {
		t.Fatalf("fio iolog %s has no writes", path)
	}
	return out
}

// TestCBTExactAfterFio: the bitmap is exactly the blocks of a recorded fio job plus qemu-io
// writes, zeroes and discards, through both URIs; the same after a clean restart; clear and rm
// do what they say.
func TestCBTExactAfterFio(t *testing.T) {
	const size = 64 << 20
	d := startDaemon(t)
	d.CreateVolume("cbt", "64M")
	uri := d.UnixURI("cbt")
	qemuIO(t, uri, "write -P 0x11 0 1M") // before tracking: not recorded
	if out := d.CLI("cbt", "enable", "cbt"); !strings.Contains(out, "qemu:dirty-bitmap:cbt") {
		t.Fatalf("cbt enable: %s", out)
	}
	if out := run(t, "nbdinfo", "--list", "--json", uri); !strings.Contains(out, `"qemu:dirty-bitmap:cbt"`) {
		t.Fatalf("nbdinfo --list does not show the bitmap's context:\n%s", out)
	}

	iolog := filepath.Join(t.TempDir(), "fio.iolog")
	run(t, "fio", "--name=cbt", "--ioengine=nbd", "--uri="+uri, "--rw=randwrite", "--bsrange=512-128k",
		"--size=64m", "--number_ios=400", "--randseed=20261125", "--iodepth=16", "--write_iolog="+iolog)
	written := fioWrites(t, iolog)
	cmds := []string{"write -z 40M 200k", "discard 50M 64k", "write -P 0x22 67108352 512"} // the last sector too
	qemuIO(t, uri, cmds...)
	written = append(written, extent{40 << 20, 200 << 10}, extent{50 << 20, 64 << 10}, extent{size - 512, 512})
	want := cbtBlocks(written, size)
	t.Logf("fio issued %d writes; %d dirty extents expected", len(written)-3, len(want))

	check := func(what string) {
		t.Helper()
		for _, u := range d.URIs("cbt") {
			if got := cbtMap(t, u, "cbt", size); !equalExtents(got, want) {
				t.Fatalf("%s: dirty map via %s:\n got  %v\n want %v", what, u, got, want)
			}
		}
		in := cbtList(t, d, "cbt")
		var sum int64
		for _, e := range want {
			sum += e.Len
		}
		if len(in.Bitmaps) != 1 || in.Bitmaps[0].DirtyBytes != sum || in.Recovered {
			t.Fatalf("%s: cbt list %+v, want %d dirty bytes, not recovered", what, in, sum)
		}
	}
	check("after the writes")
	d.Stop()
	d.Restart()
	check("after a clean restart")

	d.CLI("cbt", "clear", "cbt", "cbt")
	if got := cbtMap(t, uri, "cbt", size); len(got) != 0 {
		t.Fatalf("after clear: dirty %v", got)
	}
	qemuIO(t, uri, "write -P 0x33 10M 4k")
	if got, want := cbtMap(t, uri, "cbt", size), []extent{{10 << 20, cbtBlock}}; !equalExtents(got, want) {
		t.Fatalf("after clear and one write: %v, want %v", got, want)
	}
	d.CLI("cbt", "rm", "cbt", "cbt")
	if code, out := runStatus(t, "nbdinfo", "--map=qemu:dirty-bitmap:cbt", uri); code == 0 {
		t.Fatalf("nbdinfo maps a removed bitmap:\n%s", out)
	}
}

// TestCBTKill9UnderLoad: four NBD connections write, zero and trim at random offsets over a
// 2 GiB volume (so the 1 GiB activity log keeps evicting) and record each acknowledged request;
// the daemon is killed with SIGKILL mid-load and restarted; the bitmap, read with nbdinfo,
// covers every request acknowledged in every round so far. Over-reporting is allowed.
func TestCBTKill9UnderLoad(t *testing.T) {
	const (
		size    = 2 << 30
		rounds  = 4
		writers = 4
	)
	d := startDaemon(t)
	d.CreateVolume("k9", "2G")
	d.CLI("cbt", "enable", "k9")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	target, err := nbd.ParseURI(d.UnixURI("k9"))
	if err != nil {
		t.Fatal(err)
	}
	var acked []extent
	for round := range rounds {
		var mu sync.Mutex // guards roundAcked
		var roundAcked []extent
		var wg sync.WaitGroup
		for w := range writers {
			cl, err := nbd.Dial(t.Context(), target, nbd.ClientOptions{})
			if err != nil {
				t.Fatalf("round %d: dial: %v", round, err)
			}
			wr := rand.New(rand.NewPCG(seed, uint64(round*writers+w+1)))
			wg.Go(func() {
				defer cl.Close()
				buf := make([]byte, 64<<10)
				for {
					n := (1 + wr.Int64N(16)) * 4096
					off := wr.Int64N((size-n)/512) * 512
					var err error
					switch wr.IntN(10) {
					case 0:
						err = cl.WriteZeroes(context.Background(), off, n, 0)
					case 1:
						err = cl.Trim(context.Background(), off, n, 0)
					default:
						err = cl.WriteAt(context.Background(), buf[:n], off, 0)
					}
					if err != nil {
						return // the daemon is gone
					}
					mu.Lock()
					roundAcked = append(roundAcked, extent{off, n})
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(150+r.IntN(350)) * time.Millisecond)
		d.Kill()
		wg.Wait()
		if len(roundAcked) == 0 {
			t.Fatalf("round %d: no write was acknowledged before the kill", round)
		}
		acked = append(acked, roundAcked...)
		d.Restart()
		dirty := cbtMap(t, d.UnixURI("k9"), "cbt", size)
		if miss, ok := cbtCovers(dirty, cbtBlocks(acked, size)); !ok {
			t.Fatalf("round %d: acknowledged write in %v is not dirty after kill -9 and restart", round, miss)
		}
		var dirtyBytes int64
		for _, e := range dirty {
			dirtyBytes += e.Len
		}
		in := cbtList(t, d, "k9")
		if !in.Recovered {
			t.Errorf("round %d: cbt list does not say the stop was unclean: %+v", round, in)
		}
		t.Logf("round %d: %d requests acknowledged (%d in all); %d MiB dirty", round, len(roundAcked), len(acked), dirtyBytes>>20)
	}
}

// TestCBTAcrossPivots: writes are tracked exactly across snapshot create and removal and a live
// migration, through new connections and through one connection that stays open across them.
func TestCBTAcrossPivots(t *testing.T) {
	const size = 32 << 20
	d := startDaemon(t)
	d.CreateVolume("pv", "32M")
	d.CLI("cbt", "enable", "pv", "--bitmap", "inc")
	ds2 := filepath.Join(t.TempDir(), "ds2")
	d.CLI("datastore", "add", "ds2", ds2)
	uri := d.UnixURI("pv")
	target, err := nbd.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := nbd.Dial(t.Context(), target, nbd.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var written []extent
	step := 0
	write := func() {
		t.Helper()
		step++
		off := int64(step) * 3 << 20
		qemuIO(t, uri, fmt.Sprintf("write -P %#x %d 4k", step, off))
		if err := cl.WriteAt(t.Context(), make([]byte, 8192), off+1<<20, 0); err != nil {
			t.Fatalf("write through the long-lived connection: %v", err)
		}
		written = append(written, extent{off, 4096}, extent{off + 1<<20, 8192})
	}
	write()
	d.CLI("snapshot", "create", "pv", "--name", "s1")
	write()
	d.CLI("snapshot", "rm", "pv", "s1")
	write()
	d.CLI("migrate", "pv", "--to", "ds2")
	write()
	if _, err := os.Stat(filepath.Join(ds2, "pv")); err != nil {
		t.Fatalf("the volume did not migrate: %v", err)
	}
	if got, want := cbtMap(t, uri, "inc", size), cbtBlocks(written, size); !equalExtents(got, want) {
		t.Fatalf("dirty map after snapshot, snapshot rm and migrate:\n got  %v\n want %v", got, want)
	}
}
