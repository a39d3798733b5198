// Package devtest is the conformance suite every blockdev.Device runs: the
// leaf, every filter, and every stack the engine builds. A device passes
// when it keeps the contract documented on blockdev.Device: exact reads
// and writes at any allowed offset, range and alignment errors, zeroing,
// trimming, block status that never lies about zeros, flush, concurrent
// writers, Close and read-only behaviour.
//
// Usage from a device's tests:
//
//	func TestConformance(t *testing.T) {
//		devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
//			return newDeviceOfSize(t, size) // zero-filled, the suite closes it
//		})
//	}
package devtest

import (
	"errors"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// DefaultSize is the device size the suite asks for: a MiB and a bit, a
// multiple of 512 but not of 4096, so the last block is partial.
const DefaultSize = 1<<20 + 12*1024 + 512

// Opener returns a new writable device of exactly size bytes that reads as
// zeros. The suite closes it.
type Opener func(t *testing.T, size int64) blockdev.Device

// Options add optional parts to the suite.
type Options struct {
	// Size overrides DefaultSize (it must suit the device's MinBlock).
	Size int64

	// OpenReadOnly, when set, returns a read-only device holding content
	// (len(content) bytes). The ReadOnly subtest uses it.
	OpenReadOnly func(t *testing.T, content []byte) blockdev.Device
}

// Run runs the conformance suite with default options.
func Run(t *testing.T, open Opener) {
	RunWithOptions(t, open, Options{})
}

// RunWithOptions runs the conformance suite.
func RunWithOptions(t *testing.T, open Opener, opts Options) {
	size := opts.Size
	if size == 0 {
		size = DefaultSize
	}
	s := &suite{open: open, size: size}
	tests := []struct {
		name string
		run  func(t *testing.T, s *suite)
	}{
		{"Caps", testCaps},
		{"FreshReadsZero", testFreshReadsZero},
		{"ReadWriteRoundTrip", testReadWriteRoundTrip},
		{"LastBlock", testLastBlock},
		{"ZeroLength", testZeroLength},
		{"OutOfRange", testOutOfRange},
		{"Misaligned", testMisaligned},
		{"WriteZeroes", testWriteZeroes},
		{"Trim", testTrim},
		{"FastZero", testFastZero},
		{"BlockStatus", testBlockStatus},
		{"Flush", testFlush},
		{"ConcurrentDisjointWriters", testConcurrentWriters},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, s) })
	}
	if opts.OpenReadOnly != nil {
		t.Run("ReadOnly", func(t *testing.T) { testReadOnly(t, s, opts.OpenReadOnly) })
	}
}

// suite is the shared configuration of one Run.
type suite struct {
	open Opener
	size int64
}

// device opens a fresh device wrapped in a shadow model and registers its
// Close.
func (s *suite) device(t *testing.T) *model {
	t.Helper()
	dev := s.open(t, s.size)
	t.Cleanup(func() {
		if err := dev.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	if got := dev.Size(); got != s.size {
		t.Fatalf("Size() = %d, want %d", got, s.size)
	}
	return newModel(t, dev)
}
