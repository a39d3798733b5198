package datastore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/extrasphere/extrasphere/internal/sparse"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// Chain files. A volume's directory holds its base (for a volume that is
// not a clone) and its own deltas, named <vol>-NNNNNN.vmdk with NNNNNN
// growing with each snapshot. Each delta names its parent in its embedded
// descriptor (parentFileNameHint, relative to its own directory): the
// delta below it, the base <vol>.vmdk, or, for a linked clone, a layer
// in the origin volume's directory (../origin/...). The top is the one
// own delta no other own delta names: writes go there. Deleting a delta
// file is the commit point of a consolidation, so there is never more
// than one candidate top, with one exception: removing a snapshot under
// the newest merges the delta above it down, names the layer below like
// it, re-points its child, then deletes it. A crash between the re-point
// and the delete leaves that delta an orphan: a leaf that carries a
// snapshot name (a top never does) equal to its parent's. ReadChain
// reports orphans apart; their content is in the parent already.

// ErrBadChain: a volume's deltas do not form one chain (a fork, a loop,
// a parent that is missing).
var ErrBadChain = errors.New("broken snapshot chain")

// maxChain bounds a chain walk, so a loop in parent hints cannot hang.
const maxChain = 1024

var deltaRE = regexp.MustCompile(`^(.+)-([0-9]{6})\.vmdk$`)

// DeltaName is the file name of a volume's n-th delta.
func DeltaName(vol string, n int) string { return fmt.Sprintf("%s-%06d.vmdk", vol, n) }

// ownDeltas lists the delta files of vol in dir, by number.
func ownDeltas(dir, vol string) ([]string, int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	type d struct {
		n    int
		path string
	}
	var ds []d
	for _, e := range ents {
		m := deltaRE.FindStringSubmatch(e.Name())
		if m == nil || m[1] != vol || !e.Type().IsRegular() {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		ds = append(ds, d{n, filepath.Join(dir, e.Name())})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].n < ds[j].n })
	out := make([]string, len(ds))
	last := 0
	for i, x := range ds {
		out[i] = x.path
		last = x.n
	}
	return out, last, nil
}

// isSparse reports whether path is a hosted sparse extent ("KDMV").
func isSparse(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false, nil // shorter than a header: a text descriptor or garbage
	}
	return bytes.Equal(magic[:], []byte("KDMV")), nil
}

// parentOf returns the resolved parent path a delta names.
func parentOf(path string) (string, error) {
	e, err := sparse.Open(path, true)
	if err != nil {
		return "", err
	}
	defer e.Close()
	hint := e.Parent().FileNameHint
	if hint == "" {
		return "", fmt.Errorf("delta %s names no parent: %w", path, ErrBadChain)
	}
	if !filepath.IsAbs(hint) {
		hint = filepath.Join(filepath.Dir(path), hint)
	}
	return filepath.Clean(hint), nil
}

// ChainFiles are a volume's layers: the flat base's descriptor and the
// deltas above it, bottom to top. Own is how many of the top deltas live
// in the volume's own directory (the rest belong to a clone's origin).
type ChainFiles struct {
	Base      string
	Deltas    []string
	Own       int
	BaseOwn   bool     // the base is in the volume's own directory (false for a linked clone)
	NextDelta int      // the number the next own delta gets
	Orphans   []string // merged deltas a crash left behind: delete them
}

// ReadChain discovers the chain of vol in dir.
func ReadChain(dir, vol string) (ChainFiles, error) {
	own, last, err := ownDeltas(dir, vol)
	if err != nil {
		return ChainFiles{}, err
	}
	cf := ChainFiles{NextDelta: last + 1, Own: len(own)}
	if len(own) == 0 {
		cf.Base = filepath.Join(dir, DescriptorName(vol))
		cf.BaseOwn = true
		return cf, nil
	}
	isOwn := map[string]bool{}
	for _, p := range own {
		isOwn[p] = true
	}
	named := map[string]bool{}
	for _, p := range own {
		parent, err := parentOf(p)
		if err != nil {
			return ChainFiles{}, err
		}
		named[parent] = true
	}
	var tops []string
	for _, p := range own {
		if named[p] {
			continue
		}
		orphan, err := isOrphan(p)
		if err != nil {
			return ChainFiles{}, err
		}
		if orphan {
			cf.Orphans = append(cf.Orphans, p)
			cf.Own--
			continue
		}
		tops = append(tops, p)
	}
	if len(tops) != 1 {
		return ChainFiles{}, fmt.Errorf("volume %s has %d top deltas %v: %w", vol, len(tops), tops, ErrBadChain)
	}
	var down []string
	for p := tops[0]; ; {
		if len(down) > maxChain {
			return ChainFiles{}, fmt.Errorf("volume %s: chain longer than %d (a loop?): %w", vol, maxChain, ErrBadChain)
		}
		sp, err := isSparse(p)
		if err != nil {
			return ChainFiles{}, fmt.Errorf("volume %s: layer %s: %w: %w", vol, p, ErrBadChain, err)
		}
		if !sp {
			cf.Base = p
			break
		}
		down = append(down, p)
		if p, err = parentOf(p); err != nil {
			return ChainFiles{}, err
		}
	}
	// Every own delta must be on the chain, and the own ones on top.
	if len(down) < cf.Own {
		return ChainFiles{}, fmt.Errorf("volume %s: %d own deltas, %d on the chain: %w", vol, cf.Own, len(down), ErrBadChain)
	}
	for i, p := range down {
		if i < cf.Own != isOwn[p] {
			return ChainFiles{}, fmt.Errorf("volume %s: delta %s is not on its chain: %w", vol, p, ErrBadChain)
		}
	}
	for i := len(down) - 1; i >= 0; i-- {
		cf.Deltas = append(cf.Deltas, down[i])
	}
	cf.BaseOwn = filepath.Dir(cf.Base) == filepath.Clean(dir)
	return cf, nil
}

// isOrphan reports whether the leaf delta at path is a merged-away layer
// (see the top of this file): it is named like its parent.
func isOrphan(path string) (bool, error) {
	name, err := SnapshotName(path)
	if err != nil || name == "" {
		return false, err
	}
	parent, err := parentOf(path)
	if err != nil {
		return false, err
	}
	pname, err := SnapshotName(parent)
	if err != nil {
		return false, nil // a missing parent is reported by the chain walk
	}
	return pname == name, nil
}

// SnapshotName returns the snapshot name a layer carries ("" for none):
// a delta's embedded descriptor or a base's text descriptor.
func SnapshotName(path string) (string, error) {
	sp, err := isSparse(path)
	if err != nil {
		return "", err
	}
	var d *vmdk.Descriptor
	if sp {
		e, err := sparse.Open(path, true)
		if err != nil {
			return "", err
		}
		d = e.Descriptor()
		e.Close()
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if d, err = vmdk.Parse(b); err != nil {
			return "", fmt.Errorf("descriptor %s: %w", path, err)
		}
	}
	name, _ := d.DDB.Get(sparse.DDBSnapshotName)
	return name, nil
}
