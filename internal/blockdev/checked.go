package blockdev

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// checked is a filter that asserts every call against the device's size
// and Caps before passing it to next, and checks next's block-status
// replies. Test builds (CheckedBuild) put one below the gate of every
// stack; the filters below it are checked by the conformance suite.
type checked struct {
	next Device
	size int64 // next.Size() at wrap time
	caps Caps  // next.Caps() at wrap time: Caps are computed once
}

var _ Device = (*checked)(nil)

// NewChecked wraps next in a checked device. A call that breaks the
// contract is not passed on: it fails with an error wrapping
// ErrContractViolation and, for a bad range, ErrOutOfRange or
// ErrMisaligned. It never panics.
func NewChecked(next Device) Device {
	return &checked{next: next, size: next.Size(), caps: next.Caps()}
}

func violation(op, format string, args ...any) error {
	return fmt.Errorf("checked %s: %s: %w", op, fmt.Sprintf(format, args...), ErrContractViolation)
}

// checkRange checks a range against size and MinBlock.
func (c *checked) checkRange(op string, off, n int64) error {
	if err := CheckRange(c.size, c.caps.MinBlock, off, n); err != nil {
		return fmt.Errorf("checked %s: %w: %w", op, ErrContractViolation, err)
	}
	return nil
}

// checkFlags rejects flags outside allowed and flags the device does not
// advertise.
func (c *checked) checkFlags(op string, flags, allowed WriteFlags) error {
	if extra := flags &^ allowed; extra != 0 {
		return violation(op, "flags %#x not allowed", uint32(extra))
	}
	if flags&FUA != 0 && !c.caps.FUA {
		return violation(op, "FUA sent to a device without Caps.FUA")
	}
	if flags&FastZero != 0 && !c.caps.FastZero {
		return violation(op, "FastZero sent to a device without Caps.FastZero")
	}
	return nil
}

func (c *checked) checkPayload(op string, n int) error {
	if c.caps.MaxPayload > 0 && int64(n) > int64(c.caps.MaxPayload) {
		return violation(op, "%d-byte buffer exceeds MaxPayload %d", n, c.caps.MaxPayload)
	}
	return nil
}

func (c *checked) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := c.checkRange("read", off, int64(len(p))); err != nil {
		return err
	}
	if err := c.checkPayload("read", len(p)); err != nil {
		return err
	}
	return c.next.ReadAt(ctx, p, off)
}

func (c *checked) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	if err := c.checkRange("write", off, int64(len(p))); err != nil {
		return err
	}
	if err := c.checkPayload("write", len(p)); err != nil {
		return err
	}
	if err := c.checkFlags("write", flags, FUA); err != nil {
		return err
	}
	return c.afterWrite("write", int64(len(p)), c.next.WriteAt(ctx, p, off, flags))
}

func (c *checked) WriteZeroes(ctx context.Context, off, n int64, flags WriteFlags) error {
	if err := c.checkRange("write zeroes", off, n); err != nil {
		return err
	}
	if err := c.checkFlags("write zeroes", flags, FUA|NoHole|FastZero); err != nil {
		return err
	}
	err := c.next.WriteZeroes(ctx, off, n, flags)
	if errors.Is(err, ErrNotFast) && flags&FastZero == 0 {
		return violation("write zeroes", "device returned ErrNotFast without FastZero: %v", err)
	}
	return c.afterWrite("write zeroes", n, err)
}

func (c *checked) Trim(ctx context.Context, off, n int64, flags WriteFlags) error {
	if err := c.checkRange("trim", off, n); err != nil {
		return err
	}
	if err := c.checkFlags("trim", flags, FUA); err != nil {
		return err
	}
	return c.afterWrite("trim", n, c.next.Trim(ctx, off, n, flags))
}

// afterWrite checks that a read-only device refused a write.
func (c *checked) afterWrite(op string, n int64, err error) error {
	if err == nil && c.caps.ReadOnly && n > 0 {
		return violation(op, "read-only device accepted a %d-byte write", n)
	}
	return err
}

func (c *checked) Flush(ctx context.Context) error {
	return c.next.Flush(ctx)
}

func (c *checked) Size() int64 { return c.size }

func (c *checked) Caps() Caps {
	caps := c.caps
	caps.MetaContexts = slices.Clone(c.caps.MetaContexts)
	return caps
}

func (c *checked) BlockStatus(ctx context.Context, meta string, off, n int64) ([]Extent, error) {
	if err := c.checkRange("block status", off, n); err != nil {
		return nil, err
	}
	ext, err := c.next.BlockStatus(ctx, meta, off, n)
	if !slices.Contains(c.caps.MetaContexts, meta) {
		if err == nil {
			return nil, violation("block status", "answered context %q that is not in Caps.MetaContexts", meta)
		}
		if !errors.Is(err, ErrUnknownContext) {
			return nil, violation("block status", "context %q not served, want ErrUnknownContext, got: %v", meta, err)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := checkExtents(meta, ext, n); err != nil {
		return nil, fmt.Errorf("checked block status [%d, +%d): %w", off, n, err)
	}
	return ext, nil
}

// checkExtents checks a block-status reply for a range of n bytes: at
// least one extent when n > 0, none when n == 0, each non-empty, no more
// than n bytes in all, and only the base:allocation flags in that context.
func checkExtents(meta string, ext []Extent, n int64) error {
	if n == 0 && len(ext) != 0 || n > 0 && len(ext) == 0 {
		return fmt.Errorf("%d extents for %d bytes: %w", len(ext), n, ErrContractViolation)
	}
	var sum int64
	for i, e := range ext {
		if e.Length <= 0 || e.Length > n-sum {
			return fmt.Errorf("extent %d of length %d with %d bytes left: %w", i, e.Length, n-sum, ErrContractViolation)
		}
		if meta == MetaBaseAllocation && e.Flags&^(StateHole|StateZero) != 0 {
			return fmt.Errorf("extent %d flags %#x in %s: %w", i, e.Flags, meta, ErrContractViolation)
		}
		sum += e.Length
	}
	return nil
}

func (c *checked) Close() error {
	return c.next.Close()
}
