package vmdk

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// qemuImg runs qemu-img and returns its stdout and exit code.
func qemuImg(t *testing.T, args ...string) ([]byte, int) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "qemu-img", args...).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out, exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("qemu-img %v: %v", args, err)
	}
	return out, 0
}

// A descriptor from NewFlat plus a raw file is a monolithicFlat disk for
// qemu: right type and size, and it reads our bytes through the descriptor.
func TestQemuReadsOurFlat(t *testing.T) {
	dir := t.TempDir()
	const size = 3<<20 + 3*512 // not a multiple of a MiB
	d, err := NewFlat(size, "vol-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	if err := os.WriteFile(filepath.Join(dir, "vol-flat.vmdk"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	desc := filepath.Join(dir, "vol.vmdk")
	if err := WriteFileAtomic(desc, d.Marshal()); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "copy.raw")
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		t.Fatal(err)
	}

	out, code := qemuImg(t, "info", "--output=json", desc)
	if code != 0 {
		t.Fatalf("qemu-img info exit %d", code)
	}
	var info struct {
		Format         string `json:"format"`
		VirtualSize    int64  `json:"virtual-size"`
		FormatSpecific struct {
			Data struct {
				CreateType string `json:"create-type"`
				CID        uint32 `json:"cid"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info output %s: %v", out, err)
	}
	if got, want := info.Format, "vmdk"; got != want {
		t.Errorf("format = %q, want %q", got, want)
	}
	if got, want := info.VirtualSize, int64(size); got != want {
		t.Errorf("virtual-size = %d, want %d", got, want)
	}
	if got, want := info.FormatSpecific.Data.CreateType, CreateTypeMonolithicFlat; got != want {
		t.Errorf("create-type = %q, want %q", got, want)
	}
	if got, want := info.FormatSpecific.Data.CID, d.CID; got != want {
		t.Errorf("cid = %08x, want %08x", got, want)
	}

	if _, code := qemuImg(t, "compare", "-f", "vmdk", "-F", "raw", desc, copyPath); code != 0 {
		t.Fatalf("qemu-img compare of our vmdk and the raw copy: exit %d, want 0 (identical)", code)
	}
	// The oracle is live: a one-byte change in the last sector is seen.
	data[size-1] ^= 0xff
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, code := qemuImg(t, "compare", "-f", "vmdk", "-F", "raw", desc, copyPath); code != 1 {
		t.Fatalf("qemu-img compare after changing the last byte: exit %d, want 1 (differ)", code)
	}
}

// Descriptors qemu-img writes today (plain and embedded in a sparse
// extent) parse, with the size qemu was asked for.
func TestParseQemuCreated(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		subformat string
		size      int64
		embedded  bool
	}{
		{"monolithicFlat", 1 << 20, false},
		{"twoGbMaxExtentFlat", 5 << 30, false},
		{"monolithicSparse", 10 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.subformat, func(t *testing.T) {
			path := filepath.Join(dir, tt.subformat+".vmdk")
			if _, code := qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat="+tt.subformat, path, strconv.FormatInt(tt.size, 10)); code != 0 {
				t.Fatalf("qemu-img create exit %d", code)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.embedded {
				// Sparse header: descriptor offset and size in sectors at bytes 28 and 36.
				off := binary.LittleEndian.Uint64(data[28:]) * SectorSize
				n := binary.LittleEndian.Uint64(data[36:]) * SectorSize
				data = data[off : off+n]
			}
			d, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, data)
			}
			if got, want := d.Size(), tt.size; got != want {
				t.Errorf("Size = %d, want %d", got, want)
			}
			if got, want := d.CreateType, tt.subformat; got != want {
				t.Errorf("createType = %q, want %q", got, want)
			}
		})
	}
}
