package sparse

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The seed's trick: a delta over base A is re-pointed to base B on another
// datastore; qemu-img then shows B as its backing file, reads B through
// it, and `qemu-img commit` merges the delta into B, leaving A untouched.
func TestRepointThenCommit(t *testing.T) {
	root := t.TempDir()
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, d := range []string{dirA, dirB} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const size = 1 << 20
	contentA := pattern(20, size)
	_, cidA := newBase(t, dirA, "base", contentA)
	// B is a copy of A that differs in grain 10 (so reads prove which base
	// is used).
	contentB := bytes.Clone(contentA)
	copy(contentB[10<<16:], bytes.Repeat([]byte{0xbb}, 1<<16))
	baseB, cidB := newBase(t, dirB, "base", contentB)

	delta := newDelta(t, dirA, "delta.vmdk", size, ParentRef{FileNameHint: "base.vmdk", CID: cidA})
	e := openExtent(t, delta, false)
	ctx := t.Context()
	want := bytes.Clone(contentB)
	for g, seed := range map[int64]uint64{0: 21, 3: 22, 15: 23} {
		p := pattern(seed, int(e.GrainSize()))
		if err := e.AllocateGrain(ctx, g, p); err != nil {
			t.Fatal(err)
		}
		copy(want[g<<16:], p)
	}
	if err := e.SetZero(ctx, 5); err != nil {
		t.Fatal(err)
	}
	clear(want[5<<16 : 6<<16])
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	newParent := ParentRef{FileNameHint: "../b/base.vmdk", CID: cidB}
	if err := e.SetParent(newParent); err != nil {
		t.Fatal(err)
	}
	if got := e.Parent(); got != newParent {
		t.Fatalf("Parent after SetParent = %+v", got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openExtent(t, delta, true).Parent(); got != newParent {
		t.Fatalf("Parent after reopen = %+v, want %+v", got, newParent)
	}

	var chain []struct {
		Filename            string `json:"filename"`
		BackingFilename     string `json:"backing-filename"`
		FullBackingFilename string `json:"full-backing-filename"`
	}
	out := run(t, "qemu-img", "info", "--backing-chain", "--output=json", delta)
	if err := json.Unmarshal(out, &chain); err != nil || len(chain) != 2 {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	if chain[0].BackingFilename != newParent.FileNameHint || filepath.Clean(chain[1].Filename) != baseB {
		t.Fatalf("backing chain after re-point:\n%s", out)
	}
	run(t, "qemu-img", "check", "-q", delta)
	if got := qemuRaw(t, delta); !bytes.Equal(got, want) {
		t.Fatalf("qemu reads through the re-pointed delta: %s", firstDiff(got, want))
	}

	run(t, "qemu-img", "commit", "-q", "-f", "vmdk", delta)
	if got := readFile(t, filepath.Join(dirB, "base-flat.vmdk")); !bytes.Equal(got, want) {
		t.Fatalf("base B after commit: %s", firstDiff(got, want))
	}
	if got := readFile(t, filepath.Join(dirA, "base-flat.vmdk")); !bytes.Equal(got, contentA) {
		t.Fatalf("base A changed by the commit: %s", firstDiff(got, contentA))
	}
}
