package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// wantChunkError checks err is a *ChunkError naming backup, volume,
// offset and chunk, wrapping want, and that its message names them too.
func wantChunkError(t *testing.T, what string, err error, m *repo.Manifest, volume string, off int64, id repo.ID, want error) {
	t.Helper()
	var ce *repo.ChunkError
	if !errors.As(err, &ce) || !errors.Is(err, want) {
		t.Errorf("%s: %v, want a *ChunkError wrapping %v", what, err, want)
		return
	}
	if ce.Backup != m.ID || ce.Volume != volume || ce.Offset != off || ce.ID != id {
		t.Errorf("%s: names backup %s volume %s offset %d chunk %s; want %s %s %d %s", what, ce.Backup, ce.Volume,
			ce.Offset, ce.ID, m.ID, volume, off, id)
	}
	msg := err.Error()
	for _, s := range []string{m.ID, volume, fmt.Sprint(off), id.String()} {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: message %q does not name %s", what, msg, s)
		}
	}
}

// testCorruptChunk: every kind of damage to a chunk's blob inside its
// pack is caught by Verify(ReadData), Restore and the volume reader,
// which name the backup, volume, offset and chunk; nothing damaged is
// returned as data. Repair repacks the pack without it and the next
// backup stores it again.
func testCorruptChunk(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(7, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	const i, j = 2, 4 // random chunks, each used once
	id := v.Chunks[i]
	loc, other := locate(t, r, id), locate(t, r, v.Chunks[j])
	off := int64(i) * ChunkSize
	if loc.Length != other.Length {
		t.Fatalf("blobs of two random chunks differ in length: %d, %d (test premise)", loc.Length, other.Length)
	}
	otherObj, err := e.b.Get(ctx, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	otherBlob := otherObj[other.Offset : other.Offset+other.Length]
	if _, problems := verify(t, r, false); len(problems) != 0 {
		t.Fatalf("clean repository: %v", problems)
	}
	for _, tc := range []struct {
		name string
		edit func(blob []byte)
	}{
		{"FlipPayload", func(b []byte) { b[len(b)/2] ^= 0x10 }},
		{"FlipHeader", func(b []byte) { b[5] ^= 0x10 }},
		{"FlipLength", func(b []byte) { b[9] ^= 0x10 }},
		{"FlipCRC", func(b []byte) { b[len(b)-1] ^= 0x10 }},
		{"Zeroed", func(b []byte) { clear(b) }},
		{"Swapped", func(b []byte) { copy(b, otherBlob) }}, // a valid blob of another chunk
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer editBlob(t, e.b, loc, tc.edit)()
			if _, problems := verify(t, r, false); len(problems) != 0 {
				t.Errorf("verify without reading data: %v (the pack exists)", problems)
			}
			res, problems := verify(t, r, true)
			if len(problems) != 1 || res.CorruptChunks != 1 {
				t.Fatalf("verify --read-data: %d corrupt, problems %v; want exactly one", res.CorruptChunks, problems)
			}
			wantChunkError(t, "verify", problems[0], m, "disk0", off, id, repo.ErrCorrupt)
			if !strings.Contains(problems[0].Error(), loc.Key) {
				t.Errorf("verify: %v does not name the pack %s", problems[0], loc.Key)
			}
			_, err := tryRestore(ctx, r, m, "disk0")
			wantChunkError(t, "restore", err, m, "disk0", off, id, repo.ErrCorrupt)
			vr, err := r.OpenVolume(ctx, m, "disk0", repo.ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer vr.Close()
			p := make([]byte, 100)
			wantChunkError(t, "reader", vr.ReadAt(ctx, p, off+10), m, "disk0", off, id, repo.ErrCorrupt)
			if err := vr.ReadAt(ctx, make([]byte, 300), off-200); err == nil {
				t.Error("reader returned a read that overlaps the corrupt chunk")
			}
			if err := vr.ReadAt(ctx, p, 0); err != nil {
				t.Errorf("reader: a good chunk fails: %v", err)
			}
		})
	}

	// Repair: the pack is repacked without the corrupt chunk; a new backup
	// stores it again, which makes the old backup whole too (same
	// content, same id).
	editBlob(t, e.b, loc, func(b []byte) { b[len(b)/3] ^= 0x10 })
	var problems []error
	res, err := r.Verify(ctx, repo.VerifyOptions{ReadData: true, Repair: true}, func(p error) { problems = append(problems, p) })
	if err != nil || res.Deleted != 1 || len(problems) != 1 {
		t.Fatalf("verify --repair: %+v, problems %v, %v", res, problems, err)
	}
	if _, err := r.Locate(ctx, id); !errors.Is(err, repo.ErrMissingChunk) {
		t.Fatalf("repair left the corrupt chunk in the index: %v", err)
	}
	if _, err := e.b.Size(ctx, loc.Key); err == nil {
		t.Fatal("repair left the damaged pack")
	}
	res, problems = verify(t, r, true)
	if res.MissingChunks != 1 || len(problems) != 1 {
		t.Fatalf("after repair: %+v, %v; want the one chunk missing", res, problems)
	}
	wantChunkError(t, "verify after repair", problems[0], m, "disk0", off, id, repo.ErrMissingChunk)
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	if m2.Stats.ChunksNew != 1 {
		t.Errorf("backup after repair stored %d chunks, want 1", m2.Stats.ChunksNew)
	}
	if got := restore(t, r, m, "disk0"); !bytes.Equal(got, im.snapshot()) {
		t.Error("old backup does not restore after the chunk came back")
	}
	verifyClean(t, r)
}

// packChunks returns the distinct chunks of v whose first copy is in the
// pack key, and the offset where v first uses each.
func packChunks(t *testing.T, r *repo.Repo, v *repo.Volume, key string) map[repo.ID]int64 {
	out := map[repo.ID]int64{}
	for i, id := range v.Chunks {
		if _, seen := out[id]; seen || id.IsNull() {
			continue
		}
		if locate(t, r, id).Key == key {
			out[id] = int64(i) * ChunkSize
		}
	}
	return out
}

// testTruncatedPack: a pack cut short loses its header and the chunks
// past the cut; verify reports the pack and each lost chunk, restore
// fails naming one, the chunks before the cut still read.
func testTruncatedPack(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(18, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	loc := locate(t, r, v.Chunks[2])
	cut := loc.Offset + loc.Length/2
	inPack := packChunks(t, r, v, loc.Key)
	lost := map[repo.ID]int64{}
	for id, off := range inPack {
		if l := locate(t, r, id); l.Offset+l.Length > cut {
			lost[id] = off
		}
	}
	orig, err := e.b.Get(ctx, loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Put(ctx, loc.Key, orig[:cut]); err != nil {
		t.Fatal(err)
	}
	res, problems := verify(t, r, true)
	var chunkErrs int
	for _, p := range problems {
		var ce *repo.ChunkError
		switch {
		case errors.As(p, &ce):
			chunkErrs++
			if off, ok := lost[ce.ID]; !ok || ce.Offset != off || !errors.Is(p, repo.ErrCorrupt) {
				t.Errorf("verify: %v; want one of the chunks past the cut, at its first offset", p)
			}
		case !errors.Is(p, repo.ErrCorrupt) || !strings.Contains(p.Error(), loc.Key):
			t.Errorf("verify: %v; want the truncated pack named", p)
		}
	}
	if chunkErrs != len(lost) || res.CorruptChunks != len(lost) || len(problems) != len(lost)+1 {
		t.Errorf("verify of a truncated pack: %d chunk problems, %+v, %v; want %d and the pack's", chunkErrs, res, problems, len(lost))
	}
	_, err = tryRestore(ctx, r, m, "disk0")
	var ce *repo.ChunkError
	if !errors.As(err, &ce) || !errors.Is(err, repo.ErrCorrupt) {
		t.Errorf("restore: %v, want a *ChunkError", err)
	} else if _, ok := lost[ce.ID]; !ok {
		t.Errorf("restore names chunk %s, not one past the cut", ce.ID)
	}
	vr, err := r.OpenVolume(ctx, m, "disk0", repo.ReaderOptions{ReadAhead: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer vr.Close()
	for id, off := range inPack {
		p := make([]byte, ChunkSize)
		err := vr.ReadAt(ctx, p, off)
		if _, gone := lost[id]; gone != (err != nil) {
			t.Errorf("reader at %d (chunk lost: %v): %v", off, gone, err)
		}
	}
	if err := e.b.Put(ctx, loc.Key, orig); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, r)
}

// testMissingChunk: a deleted pack is reported by Verify (no data read
// needed) for each chunk it held, and by Restore, named; the next
// incremental backup notices the repository lacks them, reads those
// chunks again and stores them.
func testMissingChunk(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(14, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	loc := locate(t, r, v.Chunks[4])
	lost := packChunks(t, r, v, loc.Key)
	if err := e.b.Delete(ctx, loc.Key); err != nil {
		t.Fatal(err)
	}
	res, problems := verify(t, r, false)
	if len(problems) != len(lost) || res.MissingChunks != len(lost) {
		t.Fatalf("verify: %d missing, problems %v; want %d", res.MissingChunks, problems, len(lost))
	}
	for _, p := range problems {
		var ce *repo.ChunkError
		if !errors.As(p, &ce) {
			t.Fatalf("verify: %v, want a *ChunkError", p)
		}
		wantChunkError(t, "verify", p, m, "disk0", lost[ce.ID], ce.ID, repo.ErrMissingChunk)
	}
	first := int64(-1)
	var firstID repo.ID
	for id, off := range lost {
		if first < 0 || off < first {
			first, firstID = off, id
		}
	}
	_, err := tryRestore(ctx, r, m, "disk0")
	wantChunkError(t, "restore", err, m, "disk0", first, firstID, repo.ErrMissingChunk)

	im.resetReads()
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v, Dirty: []blockdev.Range{}}})
	var wantReads []int64
	for i, id := range v.Chunks {
		if _, ok := lost[id]; ok {
			wantReads = append(wantReads, int64(i)*ChunkSize)
		}
	}
	checkReads(t, im, wantReads)
	if m2.Stats.ChunksNew != int64(len(lost)) {
		t.Errorf("incremental after a lost pack stored %d chunks, want %d", m2.Stats.ChunksNew, len(lost))
	}
	for _, mm := range []*repo.Manifest{m, m2} {
		if got := restore(t, r, mm, "disk0"); !bytes.Equal(got, im.snapshot()) {
			t.Errorf("backup %s does not restore", mm.ID)
		}
	}
	verifyClean(t, r)
}

// testLostIndex: packs whose index objects are gone or damaged are still
// self-describing: verify names the chunks readers cannot find and the
// pack that holds them; a backup, verify --repair and prune each put
// them back in the index from the packs' headers.
func testLostIndex(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(19, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	want := im.snapshot()
	d := distinct(v)
	dropIndex := func(damage bool) {
		t.Helper()
		for key := range objects(t, e.b, "index/") {
			var err error
			if damage {
				var obj []byte
				if obj, err = e.b.Get(ctx, key); err == nil {
					err = e.b.Put(ctx, key, flip(obj, len(obj)/2))
				}
			} else {
				err = e.b.Delete(ctx, key)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		damage bool
		fix    func(t *testing.T)
	}{
		{"Backup", false, func(t *testing.T) {
			m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
			if m2.Stats.ChunksNew != 0 || m2.Stats.ChunksDeduped == 0 {
				t.Errorf("backup over unindexed packs: %+v, want everything deduplicated", m2.Stats)
			}
		}},
		{"Repair", true, func(t *testing.T) {
			res, err := r.Verify(ctx, repo.VerifyOptions{ReadData: true, Repair: true}, func(error) {})
			if err != nil || res.Reindexed == 0 {
				t.Errorf("verify --repair: %+v, %v; want packs indexed again", res, err)
			}
		}},
		{"Prune", false, func(t *testing.T) {
			st, err := r.Prune(ctx, nil)
			if err != nil || st.PacksIndexed == 0 || st.PacksDeleted != 0 {
				t.Errorf("prune: %+v, %v; want packs indexed again, none deleted", st, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropIndex(tc.damage)
			res, problems := verify(t, r, false)
			if res.MissingChunks != d || res.OrphanPacks == 0 {
				t.Errorf("verify without the index: %+v, want %d chunks missing from it and orphan packs", res, d)
			}
			for _, p := range problems {
				var ce *repo.ChunkError
				if errors.As(p, &ce) && (!errors.Is(p, repo.ErrMissingChunk) || !strings.Contains(p.Error(), "packs/")) {
					t.Errorf("verify: %v; want the chunk missing from the index and the pack holding it named", p)
				}
			}
			// (A fresh handle: r may hold the index in memory from before.)
			if _, err := tryRestore(ctx, e.open(), m, "disk0"); !errors.Is(err, repo.ErrMissingChunk) {
				t.Errorf("restore without the index: %v, want ErrMissingChunk", err)
			}
			tc.fix(t)
			if got := restore(t, r, m, "disk0"); !bytes.Equal(got, want) {
				t.Error("restore after the index came back differs")
			}
			verifyClean(t, r)
		})
	}
}

// testBadManifest: a damaged manifest is named by Load, List, Verify; prune
// refuses to sweep while it cannot read it; forget removes it.
func testBadManifest(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	m1 := backup(t, r, repo.BackupOptions{}, vol{"disk0", newImage(15, 512<<10), repo.VolumeOptions{}})
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", newImage(16, 512<<10), repo.VolumeOptions{}})
	key1 := "snapshots/" + m1.ID
	orig, err := e.b.Get(ctx, key1)
	if err != nil {
		t.Fatal(err)
	}
	obj2, err := e.b.Get(ctx, "snapshots/"+m2.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		obj  []byte
	}{
		{"FlippedBit", flip(orig, len(orig)/2)},
		{"Truncated", orig[:len(orig)/2]},
		{"Garbage", []byte("garbage")},
		{"OtherBackup", obj2}, // a valid manifest under another backup's name
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.b.Put(ctx, key1, tc.obj); err != nil {
				t.Fatal(err)
			}
			defer e.b.Put(ctx, key1, orig)
			_, err := r.Load(ctx, m1.ID)
			var me *repo.ManifestError
			if !errors.As(err, &me) || me.Backup != m1.ID || !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), m1.ID) {
				t.Errorf("Load: %v, want a *ManifestError naming %s wrapping ErrCorrupt", err, m1.ID)
			}
			ms, err := r.List(ctx)
			if !errors.As(err, &me) || len(ms) != 1 || ms[0].ID != m2.ID {
				t.Errorf("List: %d manifests, %v; want the good one and a *ManifestError", len(ms), err)
			}
			_, problems := verify(t, r, true)
			if len(problems) != 1 || !errors.As(problems[0], &me) || me.Backup != m1.ID {
				t.Errorf("verify: %v, want one *ManifestError for %s", problems, m1.ID)
			}
			before := objects(t, e.b, "")
			if _, err := r.Prune(ctx, nil); !errors.As(err, &me) {
				t.Errorf("prune with an unreadable manifest: %v, want a *ManifestError", err)
			}
			if after := objects(t, e.b, ""); len(after) != len(before) {
				t.Errorf("prune changed the repository (%d objects, then %d) while a manifest was unreadable", len(before), len(after))
			}
		})
	}
	// A stray object under snapshots/ is reported by verify, ignored by List.
	if err := e.b.Put(ctx, "snapshots/stray", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ms, err := r.List(ctx); err != nil || len(ms) != 2 {
		t.Errorf("List with a stray object: %d, %v", len(ms), err)
	}
	if _, problems := verify(t, r, false); len(problems) != 1 || !errors.Is(problems[0], repo.ErrCorrupt) {
		t.Errorf("verify with a stray object: %v", problems)
	}
	e.b.Delete(ctx, "snapshots/stray")
	// Forget removes the bad one; then prune sweeps its chunks.
	if err := e.b.Put(ctx, key1, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, m1.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Prune(ctx, nil); err != nil || st.ChunksDeleted == 0 || st.PacksDeleted == 0 {
		t.Fatalf("prune after forget: %+v, %v", st, err)
	}
	verifyClean(t, r)
}
