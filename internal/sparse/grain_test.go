package sparse

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

func TestGrainErrors(t *testing.T) {
	ctx := t.Context()
	path := newDelta(t, t.TempDir(), "d.vmdk", odd, ParentRef{})
	e := openExtent(t, path, false)
	defer e.Close()
	gs := int(e.GrainSize())
	full := pattern(1, gs)
	if err := e.AllocateGrain(ctx, 1, full); err != nil {
		t.Fatal(err)
	}
	if err := e.SetZero(ctx, 2); err != nil {
		t.Fatal(err)
	}
	last := e.Grains() - 1
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	buf := make([]byte, 16)
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"ReadNegativeGrain", e.ReadGrain(ctx, -1, 0, buf), ErrGrainRange},
		{"ReadPastLastGrain", e.ReadGrain(ctx, e.Grains(), 0, buf), ErrGrainRange},
		{"ReadNegativeOffset", e.ReadGrain(ctx, 1, -1, buf), ErrGrainRange},
		{"ReadPastGrain", e.ReadGrain(ctx, 1, gs-15, buf), ErrGrainRange},
		{"ReadPastLastGrainLen", e.ReadGrain(ctx, last, 500, buf), ErrGrainRange},
		{"ReadUnallocated", e.ReadGrain(ctx, 0, 0, buf), ErrNotAllocated},
		{"WriteUnallocated", e.WriteGrain(ctx, 0, 0, buf), ErrNotAllocated},
		{"WriteZeroGrain", e.WriteGrain(ctx, 2, 0, buf), ErrNotAllocated},
		{"WritePastGrain", e.WriteGrain(ctx, 1, gs-1, buf), ErrGrainRange},
		{"AllocateAllocated", e.AllocateGrain(ctx, 1, full), ErrAllocated},
		{"AllocateShort", e.AllocateGrain(ctx, 0, full[:100]), ErrGrainRange},
		{"AllocateLong", e.AllocateGrain(ctx, 0, append(full, 0)), ErrGrainRange},
		{"AllocateOutside", e.AllocateGrain(ctx, e.Grains(), full), ErrGrainRange},
		{"ZeroOutside", e.SetZero(ctx, -5), ErrGrainRange},
		{"Cancelled", e.ReadGrain(cancelled, 1, 0, buf), context.Canceled},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// A zeroed grain reads as zeros; the last grain takes its own length
	// or a whole grain.
	got := bytes.Repeat([]byte{1}, 100)
	if err := e.ReadGrain(ctx, 2, 7, got); err != nil || !bytes.Equal(got, make([]byte, 100)) {
		t.Fatalf("ReadGrain of a zeroed grain: %v %x", err, got[:8])
	}
	if err := e.AllocateGrain(ctx, last, full[:512]); err != nil {
		t.Fatalf("AllocateGrain(last, 512 bytes): %v", err)
	}
	if err := e.AllocateGrain(ctx, last-1, full); err != nil {
		t.Fatal(err)
	}
	if got, want := e.Lookup(last-1).Sector-e.Lookup(last).Sector, uint64(DefaultGrainSectors); got != want {
		t.Fatalf("grain after the short last grain is %d sectors on, want %d (grain-aligned)", got, want)
	}
}

func TestReadOnlyAndClosed(t *testing.T) {
	ctx := t.Context()
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{})
	e := openExtent(t, path, true)
	full := make([]byte, e.GrainSize())
	for name, err := range map[string]error{
		"AllocateGrain": e.AllocateGrain(ctx, 0, full),
		"SetZero":       e.SetZero(ctx, 0),
		"WriteGrain":    e.WriteGrain(ctx, 0, 0, full[:1]),
		"SetParent":     e.SetParent(ParentRef{}),
	} {
		if !errors.Is(err, blockdev.ErrReadOnly) {
			t.Errorf("%s on a read-only extent = %v, want ErrReadOnly", name, err)
		}
	}
	if err := e.Flush(ctx); err != nil {
		t.Errorf("Flush on a read-only extent = %v, want nil", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Close":     e.Close(),
		"ReadGrain": e.ReadGrain(ctx, 0, 0, full[:1]),
		"Flush":     e.Flush(ctx),
	} {
		if !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// The file cannot grow past 2^32 sectors: ErrExtentFull, which is also
// ErrNoSpace, and nothing changes.
func TestExtentFull(t *testing.T) {
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{})
	e := openExtent(t, path, false)
	defer e.Close()
	e.next = maxCapSectors*sectorSize - uint64(e.GrainSize()) + sectorSize
	err := e.AllocateGrain(t.Context(), 0, make([]byte, e.GrainSize()))
	if !errors.Is(err, ErrExtentFull) || !errors.Is(err, blockdev.ErrNoSpace) {
		t.Fatalf("AllocateGrain at 2 TiB = %v, want ErrExtentFull and ErrNoSpace", err)
	}
	if got := e.Lookup(0).Kind; got != Unallocated {
		t.Fatalf("grain 0 is %s after a failed allocation", got)
	}
}

// A qemu-img sparse extent without the zeroed-grain flag (version 1, the
// default) opens read-write; SetZero is refused, allocations work and
// qemu reads them.
func TestQemuVersion1Extent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.vmdk")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", path, "1M")
	e := openExtent(t, path, false)
	ctx := t.Context()
	if e.ZeroGrains() {
		t.Fatalf("ZeroGrains on a version 1 extent")
	}
	if err := e.SetZero(ctx, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("SetZero = %v, want ErrUnsupported", err)
	}
	want := make([]byte, 1<<20)
	g4 := pattern(4, int(e.GrainSize()))
	if err := e.AllocateGrain(ctx, 4, g4); err != nil {
		t.Fatal(err)
	}
	copy(want[4<<16:], g4)
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.Close()
	run(t, "qemu-img", "check", "-q", path)
	if got := qemuRaw(t, path); !bytes.Equal(got, want) {
		t.Fatalf("qemu-img: %s", firstDiff(got, want))
	}
}
