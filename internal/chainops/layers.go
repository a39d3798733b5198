package chainops

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/sparse"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// Disk database keys Extrasphere writes into the descriptor of the layer a
// snapshot froze (the base's text descriptor, or a delta's embedded one).
const (
	ddbSnapName = sparse.DDBSnapshotName
	ddbSnapTime = "ddb.extrasphere.snapshotTime"
)

// layer is one file of a volume's chain as the chain operations see it.
type layer struct {
	path  string
	own   bool           // in the volume's own directory (not a clone's origin)
	delta *sparse.Extent // nil for the base
}

// layersOf lists a volume's layers, bottom first. Caller holds v.SnapMu().
func layersOf(v Vol) []layer {
	cf := v.Files().Chain
	out := []layer{{path: v.Files().DescriptorPath, own: cf.BaseOwn}}
	c, ok := v.Layers().(*chain.Chain)
	if !ok {
		return out
	}
	_, ds := c.Layers()
	for i, d := range ds {
		ext := d.(chain.SparseDelta).Extent
		out = append(out, layer{path: cf.Deltas[i], own: i >= len(ds)-cf.Own, delta: ext})
	}
	return out
}

// descriptor returns a layer's descriptor (a copy).
func (l layer) descriptor() (*vmdk.Descriptor, error) {
	if l.delta != nil {
		return l.delta.Descriptor(), nil
	}
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, err
	}
	return vmdk.Parse(b)
}

// snapshot returns the name and time of the snapshot that froze the layer.
func (l layer) snapshot() (string, time.Time) {
	d, err := l.descriptor()
	if err != nil {
		return "", time.Time{}
	}
	name, _ := d.DDB.Get(ddbSnapName)
	ts, _ := d.DDB.Get(ddbSnapTime)
	t, _ := time.Parse(time.RFC3339Nano, ts)
	return name, t
}

// setSnapshot names (or, with name "", un-names) the layer, durably.
func (l layer) setSnapshot(name string, at time.Time) error {
	edit := func(d *vmdk.Descriptor) error {
		if name == "" {
			d.DDB.Delete(ddbSnapName)
			d.DDB.Delete(ddbSnapTime)
			return nil
		}
		d.DDB.Set(ddbSnapName, name)
		d.DDB.Set(ddbSnapTime, at.UTC().Format(time.RFC3339Nano))
		return nil
	}
	if l.delta != nil {
		return l.delta.RewriteDescriptor(edit)
	}
	d, err := l.descriptor()
	if err != nil {
		return fmt.Errorf("read descriptor %s: %w", l.path, err)
	}
	if err := edit(d); err != nil {
		return err
	}
	return vmdk.WriteFileAtomic(l.path, d.Marshal())
}

// cid is the layer's content id, for a child's parentCID.
func (l layer) cid() (uint32, error) {
	if l.delta != nil {
		return l.delta.CID(), nil
	}
	d, err := l.descriptor()
	if err != nil {
		return 0, err
	}
	return d.CID, nil
}

// createDeltaFile creates the next delta file of the volume f describes
// in dir over parent.
func createDeltaFile(f datastore.VolumeFiles, dir string, parent layer, size int64) (string, error) {
	n := max(f.Chain.NextDelta, 1)
	path := filepath.Join(dir, fmt.Sprintf("%s-%06d.vmdk", f.Name, n))
	hint, err := filepath.Rel(dir, parent.path)
	if err != nil {
		hint = parent.path
	}
	cid, err := parent.cid()
	if err != nil {
		return "", fmt.Errorf("read CID of %s: %w", parent.path, err)
	}
	if err := sparse.Create(path, size, sparse.ParentRef{FileNameHint: hint, CID: cid}, sparse.CreateOptions{}); err != nil {
		return "", err
	}
	return path, nil
}

// newDelta creates the volume's next delta over parent and opens it.
func newDelta(v Vol, dir string, parent layer, size int64) (*sparse.Extent, string, error) {
	path, err := createDeltaFile(v.Files(), dir, parent, size)
	if err != nil {
		return nil, "", err
	}
	ext, err := sparse.Open(path, false)
	if err != nil {
		os.Remove(path)
		return nil, "", err
	}
	return ext, path, nil
}

// openDeltaRO opens a delta to read its descriptor.
func openDeltaRO(path string) (*sparse.Extent, error) { return sparse.Open(path, true) }
