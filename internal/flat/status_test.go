package flat

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

const hole = blockdev.StateHole | blockdev.StateZero

func status(t *testing.T, d *Device, off, n int64) []blockdev.Extent {
	t.Helper()
	ext, err := d.BlockStatus(t.Context(), blockdev.MetaBaseAllocation, off, n)
	if err != nil {
		t.Fatalf("BlockStatus(%d, %d): %v", off, n, err)
	}
	return ext
}

func wantStatus(t *testing.T, d *Device, off, n int64, want []blockdev.Extent) {
	t.Helper()
	if got := status(t, d, off, n); !slices.Equal(got, want) {
		t.Fatalf("BlockStatus(%d, %d) = %v, want %v", off, n, got, want)
	}
}

func write(t *testing.T, d *Device, off int64, p []byte) {
	t.Helper()
	if err := d.WriteAt(t.Context(), p, off, 0); err != nil {
		t.Fatal(err)
	}
}

func TestBlockStatusLayout(t *testing.T) {
	const size = 1 << 20
	d := openVolume(t, newVolume(t, size, CreateOptions{}), Options{})
	defer d.Close()
	wantStatus(t, d, 0, size, []blockdev.Extent{{Length: size, Flags: hole}})
	write(t, d, 64<<10, bytes.Repeat([]byte{1}, 4096))
	write(t, d, 204800, []byte{1})
	wantStatus(t, d, 0, size, []blockdev.Extent{
		{Length: 64 << 10, Flags: hole},
		{Length: 4096, Flags: 0},
		{Length: 204800 - 69632, Flags: hole},
		{Length: 4096, Flags: 0},
		{Length: size - 208896, Flags: hole},
	})
	wantStatus(t, d, 65536+100, 8000, []blockdev.Extent{{Length: 3996, Flags: 0}, {Length: 4004, Flags: hole}})
	wantStatus(t, d, size-1, 1, []blockdev.Extent{{Length: 1, Flags: hole}})
	if _, err := d.BlockStatus(t.Context(), "qemu:dirty-bitmap:x", 0, 1); !errors.Is(err, blockdev.ErrUnknownContext) {
		t.Fatalf("unknown context = %v", err)
	}
}

// Trim punches only the whole blocks inside its range.
func TestTrimKeepsPartialBlocks(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	data := bytes.Repeat([]byte{7}, 16384)
	write(t, d, 0, data)
	if err := d.Trim(t.Context(), 100, 10000, 0); err != nil {
		t.Fatal(err)
	}
	clear(data[4096:8192])
	readBack(t, d, 0, data)
	wantStatus(t, d, 0, 16384, []blockdev.Extent{{Length: 4096, Flags: 0}, {Length: 4096, Flags: hole}, {Length: 8192, Flags: 0}})
}

// WriteZeroes deallocates unless NoHole or the volume is preallocated.
func TestWriteZeroesAllocation(t *testing.T) {
	ctx := t.Context()
	for _, tt := range []struct {
		name      string
		prealloc  bool
		flags     blockdev.WriteFlags
		wantFreed bool
	}{
		{"Punch", false, 0, true},
		{"NoHole", false, blockdev.NoHole, false},
		{"Preallocated", true, 0, false},
		{"PreallocatedFastZero", true, blockdev.FastZero, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := openVolume(t, newVolume(t, 1<<20, CreateOptions{Preallocate: tt.prealloc}), Options{})
			defer d.Close()
			data := bytes.Repeat([]byte{9}, 64<<10)
			write(t, d, 0, data)
			if err := d.Flush(ctx); err != nil { // allocate delayed blocks so st_blocks is stable
				t.Fatal(err)
			}
			before := allocated(t, d.Path())
			if err := d.WriteZeroes(ctx, 4096+10, 32<<10, tt.flags); err != nil {
				t.Fatal(err)
			}
			clear(data[4096+10 : 4096+10+32<<10])
			readBack(t, d, 0, data)
			after := allocated(t, d.Path())
			if freed := after < before; freed != tt.wantFreed {
				t.Fatalf("allocated %d -> %d bytes; want freed=%v", before, after, tt.wantFreed)
			}
		})
	}
}

// A preallocated volume keeps its data on Trim (no holes, ever).
func TestPreallocatedTrimIsNoop(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{Preallocate: true}), Options{})
	defer d.Close()
	data := bytes.Repeat([]byte{3}, 1<<20)
	write(t, d, 0, data)
	before := allocated(t, d.Path())
	if err := d.Trim(t.Context(), 0, 1<<20, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, 0, data)
	if after := allocated(t, d.Path()); after < before {
		t.Fatalf("allocated %d -> %d bytes after Trim on a preallocated volume", before, after)
	}
}

// One reply holds at most maxExtents extents; asking again continues.
func TestBlockStatusCap(t *testing.T) {
	const blocks = 2*maxExtents + 200
	const size = blocks * 4096
	d := openVolume(t, newVolume(t, size, CreateOptions{}), Options{})
	defer d.Close()
	for b := int64(0); b < blocks; b += 2 {
		write(t, d, b*4096, []byte{1})
	}
	first := status(t, d, 0, size)
	if got, want := len(first), maxExtents; got != want {
		t.Fatalf("%d extents in one reply, want %d", got, want)
	}
	var covered int64
	for pos := int64(0); pos < size; {
		ext := status(t, d, pos, size-pos)
		for _, e := range ext {
			wantFlags := uint32(0)
			if (pos/4096)%2 == 1 {
				wantFlags = hole
			}
			if e.Length != 4096 || e.Flags != wantFlags {
				t.Fatalf("extent at %d = %+v, want {4096 %d}", pos, e, wantFlags)
			}
			pos += e.Length
			covered += e.Length
		}
	}
	if covered != size {
		t.Fatalf("covered %d bytes, want %d", covered, size)
	}
}

// Without SEEK_DATA everything is data, which is always a true answer.
func TestBlockStatusWithoutSeekData(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	d.sys.seek = func(int, int64, int) (int64, error) { return 0, unix.EINVAL }
	wantStatus(t, d, 100, 5000, []blockdev.Extent{{Length: 5000, Flags: 0}})
}
