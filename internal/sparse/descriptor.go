package sparse

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// CreateTypeMonolithicSparse is the createType of a delta: one hosted
// sparse extent with its descriptor embedded.
const CreateTypeMonolithicSparse = "monolithicSparse"

// DDBSnapshotName is the disk database key that names the snapshot a delta
// holds (set with CreateOptions.DDB or UpdateDescriptorDDB).
const DDBSnapshotName = "ddb.extrasphere.snapshot"

// ddbToolsVersion is the last key qemu-img writes into a sparse extent's
// disk database (with the value 2147483647).
const ddbToolsVersion = "ddb.toolsVersion"

// ParentRef names a delta's parent: parentFileNameHint (relative to the
// delta's directory, or absolute) and the parent's CID at the time the
// delta was made. FileNameHint "" means no parent.
type ParentRef struct {
	FileNameHint string
	CID          uint32
}

// newDescriptor is the descriptor Create embeds, the one qemu-img writes
// for `create -f vmdk -o subformat=monolithicSparse -b PARENT`: a random
// CID, the parent's CID and hint, one SPARSE extent naming the file
// itself, and qemu's disk database (IDE geometry, toolsVersion), then
// extra keys.
func newDescriptor(capacity int64, fileName string, parent ParentRef, extra vmdk.DDB) (*vmdk.Descriptor, error) {
	d, err := vmdk.NewFlat(capacity, fileName)
	if err != nil {
		return nil, err
	}
	d.CreateType = CreateTypeMonolithicSparse
	d.Extents[0].Type = vmdk.TypeSparse
	if parent.FileNameHint != "" {
		d.ParentFileNameHint = parent.FileNameHint
		d.ParentCID = parent.CID
	}
	d.DDB.Set(ddbToolsVersion, "2147483647")
	for _, kv := range extra {
		d.DDB.Set(kv.Key, kv.Value)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// parseEmbedded parses the descriptor area: the text ends at the first NUL
// (qemu treats it as a C string, and after qemu rewrites the CID stale
// bytes may follow the NUL). It checks that the descriptor is a
// monolithicSparse with one SPARSE extent of the header's capacity.
func parseEmbedded(area []byte, h *header) (*vmdk.Descriptor, error) {
	text := area
	if i := bytes.IndexByte(area, 0); i >= 0 {
		text = area[:i]
	}
	d, err := vmdk.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("embedded descriptor at sector %d: %w: %w", h.DescOffset, ErrCorrupt, err)
	}
	if !strings.EqualFold(d.CreateType, CreateTypeMonolithicSparse) {
		return nil, fmt.Errorf("createType %q: %w", d.CreateType, ErrUnsupported)
	}
	if len(d.Extents) != 1 || d.Extents[0].Type != vmdk.TypeSparse {
		return nil, corrupt("embedded descriptor does not name exactly one SPARSE extent")
	}
	if got, want := d.Extents[0].Sectors, int64(h.Capacity); got != want {
		return nil, corrupt("descriptor extent of %d sectors, header capacity %d", got, want)
	}
	return d, nil
}

func cloneDescriptor(d *vmdk.Descriptor) *vmdk.Descriptor {
	c := *d
	c.Header = slices.Clone(d.Header)
	c.Extents = slices.Clone(d.Extents)
	c.DDB = slices.Clone(d.DDB)
	return &c
}

// SetParent re-points the extent to another parent (the seed's trick): it
// rewrites parentFileNameHint and parentCID in the embedded descriptor, in
// place. See RewriteDescriptor for durability.
func (e *Extent) SetParent(p ParentRef) error {
	return e.RewriteDescriptor(func(d *vmdk.Descriptor) error {
		d.ParentFileNameHint = p.FileNameHint
		d.ParentCID = vmdk.NoParentCID
		if p.FileNameHint != "" {
			d.ParentCID = p.CID
		}
		return nil
	})
}

// UpdateDescriptorDDB sets a disk database key (e.g. DDBSnapshotName) in
// the embedded descriptor, in place. See RewriteDescriptor.
func (e *Extent) UpdateDescriptorDDB(key, value string) error {
	return e.RewriteDescriptor(func(d *vmdk.Descriptor) error {
		if !strings.HasPrefix(strings.ToLower(key), "ddb.") {
			return fmt.Errorf("disk database key %q does not start with ddb.: %w", key, vmdk.ErrInvalid)
		}
		d.DDB.Set(key, value)
		return nil
	})
}

// SetCID sets the extent's content id (VMware and qemu change it when a
// disk's content changes, so children can detect a modified parent).
func (e *Extent) SetCID(cid uint32) error {
	return e.RewriteDescriptor(func(d *vmdk.Descriptor) error {
		d.CID = cid
		return nil
	})
}
