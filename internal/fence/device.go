package fence

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Device is one handle's view of a device: write-like requests are
// admitted by the fence (Enter/Leave), reads pass. Close closes the
// handle, and next too if the Device owns it. After Close every call
// fails with blockdev.ErrClosed, also when next (shared) stays open.
type Device struct {
	next   blockdev.Device
	h      *Handle
	owns   bool
	closed atomic.Bool
}

var _ blockdev.Device = (*Device)(nil)

// NewDevice wraps next for h. owns says whether Close closes next (a
// device opened for this session) or not (a volume shared by others).
func NewDevice(next blockdev.Device, h *Handle, owns bool) *Device {
	return &Device{next: next, h: h, owns: owns}
}

func (d *Device) Size() int64         { return d.next.Size() }
func (d *Device) Caps() blockdev.Caps { return d.next.Caps() }

func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if d.closed.Load() {
		return fmt.Errorf("read: %w", blockdev.ErrClosed)
	}
	return d.next.ReadAt(ctx, p, off)
}

func (d *Device) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	if d.closed.Load() {
		return nil, fmt.Errorf("block status: %w", blockdev.ErrClosed)
	}
	return d.next.BlockStatus(ctx, meta, off, n)
}

func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	return d.admit("write", func() error { return d.next.WriteAt(ctx, p, off, flags) })
}

func (d *Device) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return d.admit("write zeroes", func() error { return d.next.WriteZeroes(ctx, off, n, flags) })
}

func (d *Device) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	return d.admit("trim", func() error { return d.next.Trim(ctx, off, n, flags) })
}

// Flush is fenced too: a fenced session must not be told that anything
// is durable.
func (d *Device) Flush(ctx context.Context) error {
	return d.admit("flush", func() error { return d.next.Flush(ctx) })
}

// admit runs fn as one admitted request. A closed Device's session is
// over: nothing more of it may reach next, which stays open when shared.
func (d *Device) admit(what string, fn func() error) error {
	if d.closed.Load() {
		return fmt.Errorf("%s: %w", what, blockdev.ErrClosed)
	}
	if err := d.h.Enter(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer d.h.Leave()
	return fn()
}

// Close ends the handle (and closes next if owned).
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return fmt.Errorf("close: %w", blockdev.ErrClosed)
	}
	d.h.Close()
	if d.owns {
		return d.next.Close()
	}
	return nil
}
