package engine

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/mirror"
)

// The conformance suite over a volume's device exactly as the daemon
// serves it, built by the engine's own operations: CBT enabled, a
// snapshot taken (a sparse delta over the flat base) and an in-sync
// mirror to a file. The stack is gate -> [checked] -> cbt.Tracker ->
// mirror.Filter -> chain. When the suite closes the device, the replica
// file must equal the volume and the bitmap must mark exactly the ranges
// the suite changed; then the engine stops as the daemon does (Close).
func TestStackConformance(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		return openStackVolume(t, size)
	})
}

func openStackVolume(t *testing.T, size int64) blockdev.Device {
	t.Helper()
	ctx := t.Context()
	e := openEngine(t, t.TempDir())
	t.Cleanup(func() { e.Close() }) // after the suite's Close, which already stopped it
	mustCreate(t, e, CreateOptions{Name: "v", Size: size})
	if _, err := e.EnableCBT(ctx, "v", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateSnapshot(ctx, []string{"v"}, "s1"); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "replica.raw")
	if _, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "file://" + target}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, e, "v", mirror.StateInSync)
	checkStackShape(t, e, "v")
	ex, release, err := e.OpenExport(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return &stackVolume{Device: ex.Device, t: t, e: e, target: target}
}

// checkStackShape checks that what the suite runs over is the stack the
// test means: every filter present, over a chain of one delta.
func checkStackShape(t *testing.T, e *Engine, vol string) {
	t.Helper()
	e.mu.Lock()
	v := e.volumes[vol]
	g := v.dev
	e.mu.Unlock()
	if g == nil {
		t.Fatalf("volume %s has no stack (%v)", vol, v.err)
	}
	c, ok := v.layers.(*chain.Chain)
	if !ok {
		t.Fatalf("the volume's layers are %T, want a chain", v.layers)
	}
	if _, deltas := c.Layers(); len(deltas) != 1 {
		t.Fatalf("the chain has %d deltas, want the snapshot's one", len(deltas))
	}
	if blockdev.CheckedBuild {
		return // the checked device does not show what it wraps
	}
	tr, ok := g.Current().(*cbt.Tracker)
	if !ok {
		t.Fatalf("under the gate: %T, want the CBT tracker", g.Current())
	}
	f, ok := tr.Next().(*mirror.Filter)
	if !ok {
		t.Fatalf("under the tracker: %T, want the mirror filter", tr.Next())
	}
	if f.Next() != v.layers {
		t.Fatalf("under the mirror filter: %T, want the volume's chain", f.Next())
	}
}

// stackVolume is a volume's device as the suite sees it. It records the
// ranges that writes, zeroes and trims changed, and its first Close
// checks the replica and the bitmap before it stops the engine.
type stackVolume struct {
	blockdev.Device
	t      *testing.T
	e      *Engine
	target string

	mu      sync.Mutex       // guards changed and closed
	changed []blockdev.Range // ranges of completed writes, zeroes and trims
	closed  bool
}

func (s *stackVolume) record(off, n int64, err error) error {
	if err == nil && n > 0 {
		s.mu.Lock()
		s.changed = append(s.changed, blockdev.Range{Off: off, Len: n})
		s.mu.Unlock()
	}
	return err
}

func (s *stackVolume) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return s.record(off, int64(len(p)), s.Device.WriteAt(ctx, p, off, f))
}

func (s *stackVolume) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return s.record(off, n, s.Device.WriteZeroes(ctx, off, n, f))
}

func (s *stackVolume) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return s.record(off, n, s.Device.Trim(ctx, off, n, f))
}

// Close checks the replica and the bitmap, then stops the engine (which
// flushes and closes the stack); a later Close reaches the closed gate.
func (s *stackVolume) Close() error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if !first {
		return s.Device.Close()
	}
	s.checkReplica()
	s.checkBitmap()
	return s.e.Close()
}

// checkReplica waits for the mirror to be in sync (a trim makes it copy
// the trimmed chunks again) and compares the replica file with the volume.
// It runs in the suite's cleanup, when t.Context() is already done.
func (s *stackVolume) checkReplica() {
	t := s.t
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	waitMirror(t, s.e, "v", mirror.StateInSync)
	size := s.Size()
	vol := make([]byte, size)
	for off := int64(0); off < size; off += 1 << 20 {
		if err := s.ReadAt(ctx, vol[off:min(off+1<<20, size)], off); err != nil {
			t.Fatalf("read the volume at %d: %v", off, err)
		}
	}
	rep, err := os.ReadFile(s.target)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rep)) < size {
		t.Fatalf("the replica file is %d bytes, the volume %d", len(rep), size)
	}
	if !bytes.Equal(rep[:size], vol) {
		i := 0
		for rep[i] == vol[i] {
			i++
		}
		t.Fatalf("the replica differs from the volume at byte %d: %#02x, volume %#02x", i, rep[i], vol[i])
	}
}

// checkBitmap checks that the volume's bitmap marks exactly the blocks
// of the ranges the suite changed: a missed block is a change a backup
// would lose, an extra one (a refused request marked) a needless copy.
func (s *stackVolume) checkBitmap() {
	t := s.t
	t.Helper()
	s.mu.Lock()
	want := map[int64]bool{}
	for _, r := range s.changed {
		maps.Copy(want, blocks64k([2]int64{r.Off, r.Len}))
	}
	s.mu.Unlock()
	ctx := context.WithoutCancel(t.Context()) // cleanup time: t.Context() is done
	got := map[int64]bool{}
	for pos, size := int64(0), s.Size(); pos < size; {
		ext, err := s.BlockStatus(ctx, cbt.MetaPrefix+"cbt", pos, size-pos)
		if err != nil {
			t.Fatalf("BlockStatus(cbt): %v", err)
		}
		for _, x := range ext {
			if x.Flags == cbt.StateDirty {
				maps.Copy(got, blocks64k([2]int64{pos, x.Length}))
			}
			pos += x.Length
		}
	}
	var missed, extra []int64
	for b := range want {
		if !got[b] {
			missed = append(missed, b)
		}
	}
	for b := range got {
		if !want[b] {
			extra = append(extra, b)
		}
	}
	if len(missed)+len(extra) > 0 {
		slices.Sort(missed)
		slices.Sort(extra)
		t.Fatalf("the bitmap misses changed 64 KiB blocks %v and marks unchanged ones %v", missed, extra)
	}
}
