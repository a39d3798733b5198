package blockdev_test

import (
	"context"
	"errors"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// memCaps returns the capabilities of a writable memdev with caps
// adjusted by narrow.
func memCaps(narrow func(*blockdev.Caps)) *blockdev.Caps {
	c := memdev.DefaultCaps()
	if narrow != nil {
		narrow(&c)
	}
	return &c
}

// mem returns an in-memory device of size bytes with caps; its block
// status replies stop after memExtents extents, so the checked device
// meets short replies.
func mem(size int64, caps *blockdev.Caps) *memdev.Device {
	return memdev.NewWithOptions(size, memdev.Options{Caps: caps, MaxExtents: memExtents})
}

const memExtents = 64

func TestCheckedConformance(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		return blockdev.NewChecked(mem(size, nil))
	})
}

// narrow is MinBlock 512, no FUA or FastZero, 64 KiB payloads.
func narrow(c *blockdev.Caps) {
	c.MinBlock, c.FUA, c.FastZero, c.MaxPayload = 512, false, false, 64<<10
}

// Narrow caps and a read-only variant: the suite must send only what the
// caps allow, and the checked device must let it through.
func TestCheckedConformanceNarrowCaps(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return blockdev.NewChecked(mem(size, memCaps(narrow)))
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		caps := memCaps(narrow)
		caps.ReadOnly = true
		return blockdev.NewChecked(memdev.NewWithOptions(int64(len(content)),
			memdev.Options{Caps: caps, Content: content, MaxExtents: memExtents}))
	}})
}

// spy records whether a call reached it.
type spy struct {
	blockdev.Device
	calls int
}

func (s *spy) ReadAt(ctx context.Context, p []byte, off int64) error {
	s.calls++
	return s.Device.ReadAt(ctx, p, off)
}

func (s *spy) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	s.calls++
	return s.Device.WriteAt(ctx, p, off, f)
}

func (s *spy) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	s.calls++
	return s.Device.WriteZeroes(ctx, off, n, f)
}

func (s *spy) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	s.calls++
	return s.Device.Trim(ctx, off, n, f)
}

func (s *spy) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	s.calls++
	return s.Device.BlockStatus(ctx, meta, off, n)
}

// Calls that break the contract fail with ErrContractViolation and never
// reach the device.
func TestCheckedRejectsViolations(t *testing.T) {
	caps := memCaps(narrow)
	const size = 1 << 20
	buf := make([]byte, 512)
	tests := []struct {
		name string
		call func(ctx context.Context, d blockdev.Device) error
		also error
	}{
		{"NoHoleOnWriteAt", func(ctx context.Context, d blockdev.Device) error {
			return d.WriteAt(ctx, buf, 0, blockdev.NoHole)
		}, nil},
		{"FastZeroOnTrim", func(ctx context.Context, d blockdev.Device) error {
			return d.Trim(ctx, 0, 512, blockdev.FastZero)
		}, nil},
		{"UnknownFlag", func(ctx context.Context, d blockdev.Device) error {
			return d.WriteZeroes(ctx, 0, 512, 1<<7)
		}, nil},
		{"FUAWithoutCap", func(ctx context.Context, d blockdev.Device) error {
			return d.WriteAt(ctx, buf, 0, blockdev.FUA)
		}, nil},
		{"FastZeroWithoutCap", func(ctx context.Context, d blockdev.Device) error {
			return d.WriteZeroes(ctx, 0, 512, blockdev.FastZero)
		}, nil},
		{"OverMaxPayload", func(ctx context.Context, d blockdev.Device) error {
			return d.ReadAt(ctx, make([]byte, 128<<10), 0)
		}, nil},
		{"Misaligned", func(ctx context.Context, d blockdev.Device) error {
			return d.WriteAt(ctx, buf, 1, 0)
		}, blockdev.ErrMisaligned},
		{"PastEnd", func(ctx context.Context, d blockdev.Device) error {
			return d.ReadAt(ctx, buf, size)
		}, blockdev.ErrOutOfRange},
		{"StatusPastEnd", func(ctx context.Context, d blockdev.Device) error {
			_, err := d.BlockStatus(ctx, blockdev.MetaBaseAllocation, size-512, 1024)
			return err
		}, blockdev.ErrOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &spy{Device: mem(size, caps)}
			err := tt.call(t.Context(), blockdev.NewChecked(next))
			if !errors.Is(err, blockdev.ErrContractViolation) {
				t.Fatalf("got %v, want ErrContractViolation", err)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Fatalf("got %v, want it to wrap %v too", err, tt.also)
			}
			if next.calls != 0 {
				t.Fatalf("the violating call reached the device")
			}
		})
	}
}

// liar is a device that answers wrongly.
type liar struct {
	blockdev.Device
	extents []blockdev.Extent
	err     error
}

func (l *liar) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	return l.extents, l.err
}

func (l *liar) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return l.err
}

func (l *liar) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return l.err
}

// Replies that break the contract become ErrContractViolation.
func TestCheckedRejectsBadReplies(t *testing.T) {
	base := blockdev.MetaBaseAllocation
	tests := []struct {
		name     string
		readOnly bool
		liar     liar
		call     func(ctx context.Context, d blockdev.Device) error
	}{
		{"NoExtents", false, liar{}, status(base, 0, 4096)},
		{"EmptyExtent", false, liar{extents: []blockdev.Extent{{Length: 0}}}, status(base, 0, 4096)},
		{"TooLong", false, liar{extents: []blockdev.Extent{{Length: 4096}, {Length: 1}}}, status(base, 0, 4096)},
		{"ExtentsForZeroLength", false, liar{extents: []blockdev.Extent{{Length: 1}}}, status(base, 0, 0)},
		{"UnknownFlag", false, liar{extents: []blockdev.Extent{{Length: 4096, Flags: 4}}}, status(base, 0, 4096)},
		{"AnswersUnknownContext", false, liar{extents: []blockdev.Extent{{Length: 4096}}}, status("x:y", 0, 4096)},
		{"WrongErrorForUnknownContext", false, liar{err: blockdev.ErrNotSupported}, status("x:y", 0, 4096)},
		{"ReadOnlyAcceptsWrite", true, liar{}, func(ctx context.Context, d blockdev.Device) error {
			return d.WriteAt(ctx, make([]byte, 1), 0, 0)
		}},
		{"NotFastWithoutFlag", false, liar{err: blockdev.ErrNotFast}, func(ctx context.Context, d blockdev.Device) error {
			return d.WriteZeroes(ctx, 0, 1, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caps := memCaps(func(c *blockdev.Caps) { c.ReadOnly = tt.readOnly })
			l := tt.liar
			l.Device = mem(1<<20, caps)
			if err := tt.call(t.Context(), blockdev.NewChecked(&l)); !errors.Is(err, blockdev.ErrContractViolation) {
				t.Fatalf("got %v, want ErrContractViolation", err)
			}
		})
	}
}

func status(meta string, off, n int64) func(context.Context, blockdev.Device) error {
	return func(ctx context.Context, d blockdev.Device) error {
		_, err := d.BlockStatus(ctx, meta, off, n)
		return err
	}
}

// A well-behaved call passes through unchanged, errors included.
func TestCheckedPassesThrough(t *testing.T) {
	next := mem(1<<20, nil)
	d := blockdev.NewChecked(next)
	ctx := t.Context()
	if err := d.WriteAt(ctx, []byte("hello"), 100, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if err := next.ReadAt(ctx, got, 100); err != nil || string(got) != "hello" {
		t.Fatalf("device holds %q, %v; want hello", got, err)
	}
	if err := d.WriteZeroes(ctx, 0, 4096, blockdev.FastZero|blockdev.NoHole|blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); !errors.Is(err, blockdev.ErrClosed) || errors.Is(err, blockdev.ErrContractViolation) {
		t.Fatalf("Flush after Close = %v, want the device's ErrClosed", err)
	}
}
