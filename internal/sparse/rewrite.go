package sparse

import (
	"context"
	"fmt"
	"slices"

	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// Failpoints of RewriteDescriptor, in the order they are reached.
const (
	FailpointDescBeforeFirstSync   = "sparse.descriptor.before-first-sync"   // first part written, not synced
	FailpointDescBeforeSecondWrite = "sparse.descriptor.before-second-write" // first part synced
	FailpointDescBeforeSecondSync  = "sparse.descriptor.before-second-sync"  // both written, not synced
)

// qemuDescBytes is what qemu reads and rewrites of an embedded descriptor
// (DESC_SIZE): the text plus its NUL must fit in it.
const qemuDescBytes = 20 * sectorSize

// RewriteDescriptor changes the embedded descriptor in place: fn edits a
// copy, which must still validate and keep createType and the extent line
// (ErrBadDescriptor). The new text, zero-padded to the whole descriptor
// area, must leave room for a NUL within the area and within the 10 KiB
// qemu reads (ErrDescriptorTooLarge). Nothing is written on error.
//
// The area is written in two parts with an fdatasync after each, the
// first sector (head) and the rest (tail), ordered so that a crash between
// or during them leaves a descriptor that reads as the old or the new
// text, never a mix, as long as one of the two texts fits in the head
// sector and a one-sector write is atomic:
//
//   - new text shorter than 512 bytes: head first (the new text and its
//     NUL are then complete; the old tail is ignored after the NUL), then
//     the tail's zeros;
//   - otherwise: tail first (ignored while the old text, shorter than 512
//     bytes, ends with a NUL in the head), then the head.
//
// Descriptors Create writes are about 400 bytes plus the parent hint and
// extra disk database keys. When both texts are longer than a sector the
// rewrite is not atomic: the caller must be able to redo it after a crash
// (it is idempotent).
func (e *Extent) RewriteDescriptor(fn func(*vmdk.Descriptor) error) error {
	if err := e.acquire(context.Background(), "rewrite descriptor", true); err != nil {
		return err
	}
	defer e.io.RUnlock()
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	e.mu.Lock()
	old, broken := e.desc, e.broken
	e.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("rewrite descriptor of %s: extent unusable after a failed sync, reopen it: %w", e.path, broken)
	}
	d := cloneDescriptor(old)
	if err := fn(d); err != nil {
		return fmt.Errorf("rewrite descriptor of %s: %w", e.path, err)
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("rewrite descriptor of %s: %w", e.path, err)
	}
	if d.CreateType != old.CreateType || !slices.Equal(d.Extents, old.Extents) {
		return fmt.Errorf("rewrite descriptor of %s: %w", e.path, ErrBadDescriptor)
	}
	text := d.Marshal()
	area := int(e.hdr.DescSectors) * sectorSize
	if limit := min(area, qemuDescBytes) - 1; len(text) > limit {
		return fmt.Errorf("rewrite descriptor of %s: %d bytes, room for %d: %w", e.path, len(text), limit, ErrDescriptorTooLarge)
	}
	if err := e.writeDescriptor(text, area); err != nil {
		return fmt.Errorf("rewrite descriptor of %s: %w", e.path, err)
	}
	e.mu.Lock()
	e.desc = d
	e.mu.Unlock()
	return nil
}

// writeDescriptor writes text zero-padded to area bytes at the descriptor
// offset, in the order RewriteDescriptor documents.
func (e *Extent) writeDescriptor(text []byte, area int) error {
	buf := make([]byte, area)
	copy(buf, text)
	base := int64(e.hdr.DescOffset) * sectorSize
	type part struct {
		data []byte
		off  int64
	}
	head := part{buf[:sectorSize], base}
	tail := part{buf[sectorSize:], base + sectorSize}
	parts := [2]part{tail, head}
	if len(text) < sectorSize {
		parts = [2]part{head, tail}
	}
	steps := [2]string{FailpointDescBeforeFirstSync, FailpointDescBeforeSecondSync}
	for i, p := range parts {
		if i == 1 {
			if err := e.failpoint(FailpointDescBeforeSecondWrite); err != nil {
				return err
			}
		}
		if len(p.data) == 0 {
			continue
		}
		if err := e.file.writeAt(p.data, p.off); err != nil {
			return err
		}
		if err := e.failpoint(steps[i]); err != nil {
			return err
		}
		if err := e.sync(); err != nil {
			return err
		}
	}
	return nil
}
