package sparse

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// odd is the capacity of the interop tests: 2 MiB and a sector, so the last
// grain holds only 512 bytes.
const odd = 2<<20 + 512

// qemu-img sees our delta as a vmdk over its flat base, and reads the base
// through it.
func TestQemuSeesOurDelta(t *testing.T) {
	dir := t.TempDir()
	base := pattern(1, odd)
	_, cid := newBase(t, dir, "base", base)
	delta := newDelta(t, dir, "delta.vmdk", odd, ParentRef{FileNameHint: "base.vmdk", CID: cid})

	var chain []struct {
		Filename        string `json:"filename"`
		Format          string `json:"format"`
		VirtualSize     int64  `json:"virtual-size"`
		BackingFilename string `json:"backing-filename"`
		FullBacking     string `json:"full-backing-filename"`
		FormatSpecific  struct {
			Data struct {
				CID        uint32 `json:"cid"`
				ParentCID  uint32 `json:"parent-cid"`
				CreateType string `json:"create-type"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	out := run(t, "qemu-img", "info", "--backing-chain", "--output=json", delta)
	if err := json.Unmarshal(out, &chain); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	if got, want := len(chain), 2; got != want {
		t.Fatalf("chain of %d images, want %d:\n%s", got, want, out)
	}
	top := chain[0]
	e := openExtent(t, delta, true)
	defer e.Close()
	if top.Format != "vmdk" || top.VirtualSize != odd || top.BackingFilename != "base.vmdk" ||
		top.FormatSpecific.Data.CreateType != CreateTypeMonolithicSparse ||
		top.FormatSpecific.Data.CID != e.CID() || top.FormatSpecific.Data.ParentCID != cid {
		t.Fatalf("qemu-img info of the delta:\n%s", out)
	}
	if got, want := chain[1].Filename, filepath.Join(dir, "base.vmdk"); got != want {
		t.Fatalf("backing image %q, want %q", got, want)
	}
	run(t, "qemu-img", "check", "-q", delta)
	if got := qemuRaw(t, delta); !bytes.Equal(got, base) {
		t.Fatalf("qemu reads through the empty delta: %s", firstDiff(got, base))
	}
}

// What qemu-io writes into our delta (partial grains with copy-on-write
// from the base, whole zeroed grains, partial zeroes, the odd last grain)
// reads back through our extent exactly as qemu-img reads it; then our
// writes land after qemu's grains and qemu still agrees.
func TestQemuWritesWeRead(t *testing.T) {
	dir := t.TempDir()
	base := pattern(2, odd)
	_, cid := newBase(t, dir, "base", base)
	delta := newDelta(t, dir, "delta.vmdk", odd, ParentRef{FileNameHint: "base.vmdk", CID: cid})
	createdCID := openExtentCID(t, delta)

	qemuIO(t, delta,
		"write -P 0x11 4096 4096",   // grain 0, partial
		"write -P 0x22 100k 200k",   // grains 1-4, partial at both ends
		"write -z 512k 128k",        // grains 8-9 whole: zeroed grains
		"write -z 700k 10k",         // grain 10, partial: zeros written as data
		"write -P 0x33 2097152 512", // the last grain, 512 bytes
		"write -P 0x44 1536k 64k",   // grain 24 whole
	)
	e := openExtent(t, delta, true)
	want := qemuRaw(t, delta)
	if got := view(t, e, base); !bytes.Equal(got, want) {
		t.Fatalf("our read of qemu's writes: %s", firstDiff(got, want))
	}
	for g, kind := range map[int64]GrainKind{0: Data, 4: Data, 5: Unallocated, 8: Zero, 9: Zero, 10: Data, 24: Data, 32: Data, 31: Unallocated} {
		if got := e.Lookup(g).Kind; got != kind {
			t.Errorf("grain %d is %s, want %s", g, got, kind)
		}
	}
	// qemu rewrote the CID on its first write (with %x, so the text may
	// have shrunk and left bytes after the NUL): we still parse it.
	if e.CID() == createdCID {
		t.Errorf("CID %08x unchanged after qemu's writes", createdCID)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(delta)
	if err != nil {
		t.Fatal(err)
	}
	e = openExtent(t, delta, false)
	ctx := t.Context()
	g7 := pattern(3, int(e.GrainSize()))
	if err := e.AllocateGrain(ctx, 7, g7); err != nil {
		t.Fatal(err)
	}
	if err := e.SetZero(ctx, 24); err != nil {
		t.Fatal(err)
	}
	if got := e.Lookup(7).Sector * sectorSize; got < uint64(fi.Size()) {
		t.Errorf("new grain at byte %d, inside qemu's %d-byte file", got, fi.Size())
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	copy(want[7<<16:], g7)
	clear(want[24<<16 : 25<<16])
	run(t, "qemu-img", "check", "-q", delta)
	if got := qemuRaw(t, delta); !bytes.Equal(got, want) {
		t.Fatalf("qemu's read after our writes: %s", firstDiff(got, want))
	}
}

func openExtentCID(t *testing.T, path string) uint32 {
	t.Helper()
	e := openExtent(t, path, true)
	defer e.Close()
	return e.CID()
}

// Our allocations, in-place writes and zeroed grains (over a non-zero
// base) read back through qemu-img exactly, qemu-img check is clean, and
// both copies of the grain tables are identical.
func TestWeWriteQemuReads(t *testing.T) {
	dir := t.TempDir()
	base := pattern(4, odd)
	_, cid := newBase(t, dir, "base", base)
	delta := newDelta(t, dir, "delta.vmdk", odd, ParentRef{FileNameHint: "base.vmdk", CID: cid})
	e := openExtent(t, delta, false)
	ctx := t.Context()
	want := bytes.Clone(base)
	gs := int(e.GrainSize())
	alloc := func(g int64, seed uint64) {
		t.Helper()
		p := pattern(seed, int(e.GrainLen(g)))
		if err := e.AllocateGrain(ctx, g, p); err != nil {
			t.Fatalf("AllocateGrain %d: %v", g, err)
		}
		copy(want[int(g)*gs:], p)
	}
	zero := func(g int64) {
		t.Helper()
		if err := e.SetZero(ctx, g); err != nil {
			t.Fatalf("SetZero %d: %v", g, err)
		}
		clear(want[int(g)*gs : int(g)*gs+int(e.GrainLen(g))])
	}
	alloc(0, 10)
	alloc(3, 11)
	alloc(32, 12) // the 512-byte last grain
	if err := e.WriteGrain(ctx, 3, 1000, []byte("in place")); err != nil {
		t.Fatal(err)
	}
	copy(want[3*gs+1000:], "in place")
	zero(5)      // over the base: hides it
	zero(0)      // over our own data
	alloc(5, 13) // a zeroed grain gets data again
	zero(20)
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	alloc(9, 14) // a second flush only writes what changed since
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := view(t, e, base); !bytes.Equal(got, want) {
		t.Fatalf("our own view: %s", firstDiff(got, want))
	}
	h, g := e.hdr, e.geo
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	var check struct {
		CheckErrors int `json:"check-errors"`
		Corruptions int `json:"corruptions"`
		Leaks       int `json:"leaks"`
	}
	if err := json.Unmarshal(run(t, "qemu-img", "check", "--output=json", delta), &check); err != nil {
		t.Fatal(err)
	}
	if check.CheckErrors+check.Corruptions+check.Leaks != 0 {
		t.Fatalf("qemu-img check: %+v", check)
	}
	if got := qemuRaw(t, delta); !bytes.Equal(got, want) {
		t.Fatalf("qemu's read of our writes: %s", firstDiff(got, want))
	}
	wantRaw := filepath.Join(dir, "want.raw")
	if err := os.WriteFile(wantRaw, want, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "compare", "-q", "-f", "vmdk", "-F", "raw", delta, wantRaw)

	file := readFile(t, delta)
	tablesAt := func(gd uint64) []byte {
		start := (gd + uint64(g.gdSectors)) * sectorSize
		return file[start : start+uint64(g.gts)*gtSectors*sectorSize]
	}
	if !bytes.Equal(tablesAt(h.GDOffset), tablesAt(h.RGDOffset)) {
		t.Fatalf("primary and redundant grain tables differ")
	}
	if bytes.Equal(tablesAt(h.GDOffset), make([]byte, len(tablesAt(h.GDOffset)))) {
		t.Fatalf("grain tables are still empty")
	}
}
