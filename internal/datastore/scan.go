package datastore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// VolumeFiles is what a descriptor says about a volume.
type VolumeFiles struct {
	Name           string
	DescriptorPath string
	FlatPath       string     // the FLAT extent, resolved against the descriptor's directory
	Size           int64      // virtual size in bytes
	ReadOnly       bool       // ddb.extrasphere.readOnly = "true"
	Preallocated   bool       // ddb.extrasphere.preallocated = "true"
	Importing      bool       // DIR/<vol>/.importing exists: an import has not finished
	Chain          ChainFiles // the layers: the base above (DescriptorPath) and its deltas
}

// Scan rediscovers every volume of the datastore from its descriptor files
// alone. A directory DIR/<vol> is a volume when <vol> is a valid name and
// DIR/<vol>/<vol>.vmdk exists; other entries are ignored. A volume whose
// descriptor cannot be read or understood is left out and reported as a
// *VolumeError (wrapping ErrBadVolume) in bad, so one broken volume never
// hides the others. err is set only when the datastore itself cannot be
// listed.
func (d *Datastore) Scan() (vols []VolumeFiles, bad []error, err error) {
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("scan datastore %s: %w", d.Path, err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !ValidName(name) {
			continue
		}
		if !e.IsDir() {
			continue
		}
		v, err := d.Load(name)
		if errors.Is(err, errNotVolume) {
			continue // not a volume directory (lost+found, user files)
		}
		if err != nil {
			bad = append(bad, err)
			continue
		}
		vols = append(vols, v)
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	return vols, bad, nil
}

// errNotVolume: a directory that holds no volume at all.
var errNotVolume = errors.New("not a volume directory")

// Load reads one volume from its directory: its chain and its base's
// descriptor. Errors are *VolumeError, or errNotVolume.
func (d *Datastore) Load(name string) (VolumeFiles, error) {
	chain, err := ReadChain(d.VolumeDir(name), name)
	if err != nil {
		return VolumeFiles{}, &VolumeError{Volume: name, Path: d.VolumeDir(name), Err: err}
	}
	desc := chain.Base
	if _, err := os.Stat(desc); errors.Is(err, fs.ErrNotExist) && chain.Own == 0 {
		// A flat file without its descriptor is a volume that lost
		// its descriptor: report it, never hide data.
		flatPath := filepath.Join(d.Path, name, name+"-flat.vmdk")
		if ok, _ := exists(flatPath); ok {
			return VolumeFiles{}, &VolumeError{Volume: name, Path: desc, Err: fmt.Errorf(
				"descriptor is missing but %s holds the volume's data: %w", flatPath, ErrMissingDescriptor)}
		}
		return VolumeFiles{}, errNotVolume
	}
	v, err := ReadVolume(name, desc)
	if err != nil {
		return VolumeFiles{}, err
	}
	v.Chain = chain
	if chain.Own > 0 {
		// Importing markers live in the volume's own directory.
		if v.Importing, err = exists(filepath.Join(d.VolumeDir(name), ImportingFile)); err != nil {
			return VolumeFiles{}, &VolumeError{Volume: name, Path: desc, Err: err}
		}
	}
	return v, nil
}

// ReadVolume reads one volume's descriptor. Errors are *VolumeError.
func ReadVolume(name, descPath string) (VolumeFiles, error) {
	fail := func(err error) (VolumeFiles, error) {
		return VolumeFiles{}, &VolumeError{Volume: name, Path: descPath, Err: err}
	}
	b, err := readLimited(descPath, vmdk.MaxDescriptorSize)
	if err != nil {
		return fail(err)
	}
	desc, err := vmdk.Parse(b)
	if err != nil {
		return fail(err)
	}
	if len(desc.Extents) != 1 || desc.Extents[0].Type != vmdk.TypeFlat || desc.Extents[0].Offset != 0 {
		return fail(fmt.Errorf("want one FLAT extent at offset 0 (a monolithicFlat volume), found %d extent(s)", len(desc.Extents)))
	}
	if desc.ParentFileNameHint != "" {
		return fail(errors.New("descriptor names a parent; snapshot chains are not served by this version"))
	}
	file := desc.Extents[0].File
	if !filepath.IsAbs(file) {
		file = filepath.Join(filepath.Dir(descPath), file)
	}
	ro, _ := desc.DDB.Get(vmdk.DDBExtrasphereReadOnly)
	pre, _ := desc.DDB.Get(vmdk.DDBExtraspherePreAlloc)
	importing, err := exists(filepath.Join(filepath.Dir(descPath), ImportingFile))
	if err != nil {
		return fail(err)
	}
	return VolumeFiles{
		Importing:      importing,
		Name:           name,
		DescriptorPath: descPath,
		FlatPath:       file,
		Size:           desc.Size(),
		ReadOnly:       strings.EqualFold(ro, "true"),
		Preallocated:   strings.EqualFold(pre, "true"),
	}, nil
}

// readLimited reads a whole file of at most limit bytes.
func readLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes, not a descriptor", path, limit)
	}
	return b, nil
}
