package cbt

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
)

// issued records the ranges that reached the device below the tracker.
type issued struct {
	mu     sync.Mutex // guards ranges
	ranges [][2]int64
}

func (i *issued) add(off, n int64) {
	i.mu.Lock()
	i.ranges = append(i.ranges, [2]int64{off, n})
	i.mu.Unlock()
}

func (i *issued) copy() [][2]int64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.ranges)
}

// checkCovered fails unless every block of every range is dirty in every
// bitmap of s.
func checkCovered(t *testing.T, s *State, ranges [][2]int64, what string) {
	t.Helper()
	for _, name := range s.Names() {
		d := dirtyBlocks(t, s, name)
		for _, r := range ranges {
			for _, b := range blocksOf(r[0], r[1]) {
				if !d[b] {
					t.Fatalf("%s: bitmap %s: block %d of write [%d,+%d) is clean: under-report", what, name, b, r[0], r[1])
				}
			}
		}
	}
}

// TestCrashAtAnyInstantCoversIssuedWrites: writers run with constant AL
// eviction while snapshots of the store are taken at random instants;
// each snapshot, loaded as after a crash, has every write that had
// reached the device before the snapshot dirty.
func TestCrashAtAnyInstantCoversIssuedWrites(t *testing.T) {
	const size = 48 << 20
	ms := &memStore{}
	opts := testOpts(size, 4)
	s := openMem(t, ms, opts)
	enable(t, s, "a", "b")
	var iss issued
	dev := &recDev{Device: memdev.New(size, false), ev: &events{}, onWrite: iss.add}
	tr := New(dev, s)
	ctx := t.Context()

	type crash struct {
		before [][2]int64
		disk   *memStore
	}
	var crashes []crash
	stop := make(chan struct{})
	var snapWG sync.WaitGroup
	snapWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			before := iss.copy() // first what reached the device, then the disk
			crashes = append(crashes, crash{before, ms.snapshot()})
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 400 {
				n := (1 + r.Int64N(32)) * 512
				off := r.Int64N((size-n)/512) * 512
				var err error
				switch r.IntN(8) {
				case 0:
					err = tr.WriteZeroes(ctx, off, n, 0)
				case 1:
					err = tr.Trim(ctx, off, n, 0)
				default:
					err = tr.WriteAt(ctx, make([]byte, n), off, 0)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	snapWG.Wait()
	if len(crashes) < 2 {
		t.Fatalf("only %d crash snapshots taken", len(crashes))
	}
	for i, c := range crashes {
		re := openMem(t, c.disk, opts)
		checkCovered(t, re, c.before, fmt.Sprintf("crash snapshot %d of %d", i, len(crashes)))
	}
	// And the real thing: drop the state, reload from the store.
	s.abandon()
	re := openMem(t, ms, opts)
	if !re.Recovered() {
		t.Error("Recovered() = false after a crash")
	}
	checkCovered(t, re, iss.copy(), "after abandon")
}

// TestCleanStopIsExact: after Close the reloaded bitmaps are exactly the
// written blocks, through evictions and all.
func TestCleanStopIsExact(t *testing.T) {
	const size = 20<<20 + 4096 // a partial last block
	dir := t.TempDir()
	opts := Options{Dir: dir, Volume: "v1", Size: size, ExtentSize: 1 << 20, ALSlots: 3}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	enable(t, s, "x")
	tr := New(memdev.New(size, false), s)
	r := rand.New(rand.NewPCG(1, 2))
	want := map[int64]bool{}
	for range 200 {
		n := (1 + r.Int64N(16)) * 4096
		off := r.Int64N((size-n)/4096+1) * 4096
		if err := tr.WriteAt(t.Context(), make([]byte, n), off, 0); err != nil {
			t.Fatal(err)
		}
		for _, b := range blocksOf(off, n) {
			want[b] = true
		}
	}
	if err := tr.WriteAt(t.Context(), make([]byte, 4096), size-4096, 0); err != nil {
		t.Fatal(err)
	}
	want[(size-1)/Granularity] = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	re, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if re.Recovered() || len(re.Problems()) > 0 {
		t.Errorf("after a clean stop: recovered %v, problems %q", re.Recovered(), re.Problems())
	}
	got := dirtyBlocks(t, re, "x")
	if !maps.Equal(got, want) {
		t.Errorf("dirty blocks after a clean stop: %d, want exactly the %d written", len(got), len(want))
	}
	info := re.List()
	if len(info) != 1 || info[0].DirtyBytes != int64(len(want))*Granularity-(blocks(size)*Granularity-size) {
		t.Errorf("List() = %+v; %d blocks dirty", info, len(want))
	}
	if err := tr.WriteAt(t.Context(), make([]byte, 512), 0, 0); err == nil {
		t.Error("a write through a closed state succeeded: it would go untracked")
	}
}

// TestCrashOverReportIsBounded: after a crash, what is dirty beyond the
// written blocks lies in extents that were written (the AL's), no more.
func TestCrashOverReportIsBounded(t *testing.T) {
	const size = 32 << 20
	ms := &memStore{}
	opts := testOpts(size, 8)
	s := openMem(t, ms, opts)
	enable(t, s, "a")
	tr := New(memdev.New(size, false), s)
	written := map[int64]bool{}
	for _, off := range []int64{0, 3 << 20, 17<<20 + 4096, 31 << 20} {
		if err := tr.WriteAt(t.Context(), make([]byte, 4096), off, 0); err != nil {
			t.Fatal(err)
		}
		written[off>>20] = true
	}
	s.abandon()
	re := openMem(t, ms, opts)
	for b := range dirtyBlocks(t, re, "a") {
		if !written[b*Granularity>>20] {
			t.Errorf("block %d is dirty after a crash, in extent %d that was never written", b, b*Granularity>>20)
		}
	}
	checkCovered(t, re, [][2]int64{{0, 4096}, {3 << 20, 4096}, {17<<20 + 4096, 4096}, {31 << 20, 4096}}, "after crash")
}

// tornStore tears the nth AL write: it saves what a crash in the middle
// of it leaves (half the new record over the old slot) and what had
// reached the device by then.
type tornStore struct {
	*memStore // test double: only writeAL is changed
	n         int
	iss       *issued
	torn      *memStore
	before    [][2]int64
}

func (s *tornStore) writeAL(slot int, rec []byte) error {
	s.n--
	if s.n == 0 {
		s.before = s.iss.copy()
		s.torn = s.memStore.snapshot()
		if len(s.torn.al) < 2*pageSize {
			s.torn.al = append(s.torn.al, make([]byte, 2*pageSize-len(s.torn.al))...)
		}
		copy(s.torn.al[slot*pageSize:], rec[:pageSize/2])
	}
	return s.memStore.writeAL(slot, rec)
}

func TestTornALRecordFallsBackToPrevious(t *testing.T) {
	const size = 16 << 20
	for tear := 2; tear <= 7; tear++ { // the first AL write comes with enable
		var iss issued
		ts := &tornStore{memStore: &memStore{}, n: tear, iss: &iss}
		opts := testOpts(size, 2)
		s := openMem(t, ts, opts)
		enable(t, s, "a")
		tr := New(&recDev{Device: memdev.New(size, false), ev: &events{}, onWrite: iss.add}, s)
		for _, off := range []int64{0, 5 << 20, 1 << 20, 9 << 20, 2 << 20, 12 << 20, 3 << 20} {
			if err := tr.WriteAt(t.Context(), make([]byte, 4096), off, 0); err != nil {
				t.Fatal(err)
			}
		}
		if ts.torn == nil {
			t.Fatalf("tear %d: fewer AL writes than that", tear)
		}
		re := openMem(t, ts.torn, opts)
		checkCovered(t, re, ts.before, "torn AL write")
		if !re.Recovered() {
			t.Errorf("tear %d: not seen as a crash", tear)
		}
	}
}

func TestTornBitmapPageCountsDirty(t *testing.T) {
	const size = 3 * pageBits * Granularity // three pages per bitmap
	ms := &memStore{}
	opts := testOpts(size, 8)
	s := openMem(t, ms, opts)
	enable(t, s, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ms.bm[2*pageSize+100] ^= 0x10 // page 1 of bitmap a
	re := openMem(t, ms, opts)
	d := dirtyBlocks(t, re, "a")
	if got, want := len(d), pageBits; got != want {
		t.Errorf("%d dirty blocks, want the %d of the torn page", got, want)
	}
	if !d[pageBits] || !d[2*pageBits-1] || d[pageBits-1] || d[2*pageBits] {
		t.Error("the dirty blocks are not exactly the torn page's")
	}
	if len(re.Problems()) != 1 {
		t.Errorf("problems %q, want one", re.Problems())
	}
	// Load rewrote the file: the page is whole again, still dirty.
	re2 := openMem(t, ms, opts)
	if len(re2.Problems()) != 0 || len(dirtyBlocks(t, re2, "a")) != pageBits {
		t.Errorf("second load: problems %q, %d dirty", re2.Problems(), len(dirtyBlocks(t, re2, "a")))
	}
}

func TestMissingALCountsAllDirty(t *testing.T) {
	ms := &memStore{}
	opts := testOpts(8<<20, 8)
	s := openMem(t, ms, opts)
	enable(t, s, "a")
	s.abandon()
	ms.al = nil
	re := openMem(t, ms, opts)
	if got, want := len(dirtyBlocks(t, re, "a")), int(blocks(8<<20)); got != want {
		t.Errorf("%d dirty blocks with no activity log, want all %d", got, want)
	}
}

func TestDamagedFilesAreMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(o Options) Options
		hurt func(path string)
	}{
		{"BadHeader", func(o Options) Options { return o }, func(p string) {
			b, _ := os.ReadFile(p)
			b[20] ^= 1
			os.WriteFile(p, b, 0o644)
		}},
		{"OtherSize", func(o Options) Options { o.Size *= 2; return o }, func(string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, Volume: "v", Size: 8 << 20}
			s, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			enable(t, s, "a")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.hurt(filepath.Join(dir, "v.bitmaps"))
			re, err := Open(tc.opts(opts))
			if err != nil {
				t.Fatal(err)
			}
			if len(re.Names()) != 0 || len(re.Problems()) != 1 {
				t.Errorf("names %v, problems %q: want none and one", re.Names(), re.Problems())
			}
			ents, _ := os.ReadDir(dir)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) != 2 || !strings.HasPrefix(names[0], "v.al.broken-") || !strings.HasPrefix(names[1], "v.bitmaps.broken-") {
				t.Errorf("files %v, want both moved aside", names)
			}
		})
	}
}

func TestEnableClearRemovePersist(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Volume: "v", Size: 8 << 20}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	enable(t, s, "b", "a", "c")
	if _, err := s.Enable("a", time.Now()); !errors.Is(err, ErrBitmapExists) {
		t.Errorf("Enable(a) again = %v, want ErrBitmapExists", err)
	}
	if _, err := s.Enable("-x", time.Now()); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Enable(-x) = %v, want ErrInvalidName", err)
	}
	tr := New(memdev.New(8<<20, false), s)
	if err := tr.WriteAt(t.Context(), make([]byte, 4096), 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Clear("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c"); !errors.Is(err, ErrBitmapNotFound) {
		t.Errorf("Remove(c) again = %v, want ErrBitmapNotFound", err)
	}
	s.abandon() // even without a clean stop
	re, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := re.Names(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if !dirtyBlocks(t, re, "b")[16] {
		t.Error("bitmap b lost its write")
	}
	// a was cleared after the write; the write's extent (4 MiB: blocks
	// 0..63) is still in the AL, so a crash may count it, nothing else.
	for blk := range dirtyBlocks(t, re, "a") {
		if blk/64 != 0 {
			t.Errorf("cleared bitmap a has block %d dirty outside the AL extent", blk)
		}
	}
	if err := re.Delete(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Delete left %d files", len(ents))
	}
}

func TestFreshRemovesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Volume: "v", Size: 8 << 20}
	s, _ := Open(opts)
	enable(t, s, "a")
	s.Close()
	f, err := Fresh(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Names()) != 0 {
		t.Errorf("fresh state has bitmaps %v", f.Names())
	}
	re, _ := Open(opts)
	if len(re.Names()) != 0 {
		t.Errorf("stale bitmaps %v came back", re.Names())
	}
}
