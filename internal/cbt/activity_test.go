package cbt

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/memdev"
)

// newRecorded builds a tracker over a recording memdev, with a state on a
// recording memStore; both log into one events list.
func newRecorded(t *testing.T, size int64, slots int) (*Tracker, *State, *memStore, *recDev, *events) {
	t.Helper()
	ev := &events{}
	ms := &memStore{ev: ev}
	s := openMem(t, ms, testOpts(size, slots))
	enable(t, s, "a")
	dev := &recDev{Device: memdev.New(size, false), ev: ev}
	return New(dev, s), s, ms, dev, ev
}

// after returns the events logged after the first n.
func after(ev *events, n int) []string { return ev.list()[n:] }

func TestALDurableBeforeFirstWriteIntoColdExtent(t *testing.T) {
	tr, _, _, _, ev := newRecorded(t, 16<<20, 8)
	ctx := t.Context()
	start := len(ev.list())
	buf := make([]byte, 4096)
	steps := []struct {
		off  int64
		want []string
	}{
		{0, []string{"al [0]", "write 0"}},                   // cold: the record first
		{8192, []string{"write 8192"}},                       // hot: nothing more
		{1<<20 + 512, []string{"al [0 1]", "write 1049088"}}, // another cold extent
		{4096, []string{"write 4096"}},
		{1<<20 - 2048, []string{"write 1046528"}}, // spans extents 0 and 1, both hot
		{5 << 20, []string{"al [0 1 5]", "write 5242880"}},
	}
	for _, st := range steps {
		n := len(ev.list())
		if err := tr.WriteAt(ctx, buf, st.off, 0); err != nil {
			t.Fatalf("WriteAt(%d): %v", st.off, err)
		}
		if got := after(ev, n); !slices.Equal(got, st.want) {
			t.Errorf("WriteAt(%d): events %q, want %q", st.off, got, st.want)
		}
	}
	if got, want := len(ev.list())-start, 9; got != want {
		t.Errorf("%d events for 6 writes into 3 extents, want %d: %q", got, want, after(ev, start))
	}
}

func TestEvictionWritesPagesBeforeDroppingExtent(t *testing.T) {
	tr, s, ms, _, ev := newRecorded(t, 16<<20, 2)
	ctx := t.Context()
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 1 << 20} {
		if err := tr.WriteAt(ctx, buf, off, 0); err != nil {
			t.Fatal(err)
		}
	}
	n := len(ev.list())
	if err := tr.WriteAt(ctx, buf, 2<<20, 0); err != nil { // the AL is full: extent 0 (LRU) goes
		t.Fatal(err)
	}
	got := after(ev, n)
	want := []string{"pages 1", "al [1 2]", "write 2097152"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	// A crash now: extent 0 is out of the AL, its block must be in the file.
	re := openMem(t, ms.snapshot(), testOpts(16<<20, 2))
	d := dirtyBlocks(t, re, "a")
	for _, b := range []int64{0, 16, 32} {
		if !d[b] {
			t.Errorf("after a crash block %d is clean; dirty %v", b, d)
		}
	}
	s.abandon()
}

// TestALCoversEveryIssuedWrite runs concurrent writers with a small AL
// (constant eviction) and checks, from the event log, that every write
// reached the device while its extent was in the newest durable record.
// With 8 slots a request over two extents still goes through the AL.
func TestALCoversEveryIssuedWrite(t *testing.T) {
	const size = 32 << 20
	tr, s, _, _, ev := newRecorded(t, size, 8)
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			buf := make([]byte, 8192)
			for range 300 {
				off := r.Int64N(size/4096-2) * 4096
				var err error
				if r.IntN(4) == 0 {
					err = tr.WriteZeroes(ctx, off, 8192, 0)
				} else {
					err = tr.WriteAt(ctx, buf, off, 0)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var al map[int64]bool
	writes, evictions := 0, 0
	for _, e := range ev.list() {
		kind, arg, _ := strings.Cut(e, " ")
		switch kind {
		case "pages":
			evictions++
		case "al":
			al = map[int64]bool{}
			for _, f := range strings.Fields(strings.Trim(arg, "[]")) {
				x, _ := strconv.ParseInt(f, 10, 64)
				al[x] = true
			}
		case "write", "zero":
			off, _ := strconv.ParseInt(arg, 10, 64)
			writes++
			for x := off / (1 << 20); x <= (off+8191)/(1<<20); x++ {
				if !al[x] {
					t.Fatalf("%s into extent %d while the newest AL record is %v", e, x, al)
				}
			}
		}
	}
	if evictions == 0 {
		t.Error("no eviction happened: the test does not exercise the full AL")
	}
	if writes != 6*300 {
		t.Errorf("%d writes reached the device, want %d", writes, 6*300)
	}
	s.mu.Lock()
	if n := len(s.hot); n > 8 {
		t.Errorf("%d hot extents, AL has 8 slots", n)
	}
	s.mu.Unlock()
}

func TestLargeRequestBypassesAL(t *testing.T) {
	tr, _, ms, _, ev := newRecorded(t, 16<<20, 4) // direct limit: 1 extent
	n := len(ev.list())
	if err := tr.WriteZeroes(t.Context(), 512<<10, 2<<20, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := after(ev, n), []string{"pages 1", "zero 524288"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	re := openMem(t, ms.snapshot(), testOpts(16<<20, 4))
	d := dirtyBlocks(t, re, "a")
	for _, b := range blocksOf(512<<10, 2<<20) {
		if !d[b] {
			t.Errorf("block %d of a large zero is clean after a crash", b)
		}
	}
}

func TestWriteFailsWhenALCannotBePersisted(t *testing.T) {
	tr, _, ms, dev, ev := newRecorded(t, 16<<20, 8)
	ms.mu.Lock()
	ms.fail = errors.New("injected EIO")
	ms.mu.Unlock()
	n := len(ev.list())
	err := tr.WriteAt(t.Context(), make([]byte, 4096), 3<<20, 0)
	if err == nil {
		t.Fatal("WriteAt succeeded though the activity log could not be written")
	}
	if got := after(ev, n); len(got) != 0 {
		t.Errorf("events %q: the write reached the device untracked", got)
	}
	ms.mu.Lock()
	ms.fail = nil
	ms.mu.Unlock()
	if err := tr.WriteAt(t.Context(), make([]byte, 4096), 3<<20, 0); err != nil {
		t.Fatalf("WriteAt after the store recovered: %v", err)
	}
	if got, want := after(ev, n), []string{"al [3]", "write 3145728"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	_ = dev
}

func TestNoBitmapsNoTrackingIO(t *testing.T) {
	ev := &events{}
	s := openMem(t, &memStore{ev: ev}, testOpts(8<<20, 8))
	tr := New(&recDev{Device: memdev.New(8<<20, false), ev: ev}, s)
	if err := tr.WriteAt(t.Context(), make([]byte, 4096), 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := ev.list(), []string{"write 0"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
