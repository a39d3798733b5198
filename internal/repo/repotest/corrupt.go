package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

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

// testCorruptChunk: every kind of damage to a chunk object is caught by
// Verify(ReadData), Restore and the volume reader, which name the backup,
// volume, offset and chunk; nothing damaged is returned as data. Repair
// deletes it and the next backup uploads it again.
func testCorruptChunk(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(7, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	const i, j = 2, 4 // random chunks, each used once
	id, key := v.Chunks[i], chunkKey(v.Chunks[i])
	off := int64(i) * ChunkSize
	orig, err := e.b.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.b.Get(ctx, chunkKey(v.Chunks[j]))
	if err != nil {
		t.Fatal(err)
	}
	if _, problems := verify(t, r, false); len(problems) != 0 {
		t.Fatalf("clean repository: %v", problems)
	}
	for _, tc := range []struct {
		name string
		obj  []byte
	}{
		{"FlipPayload", flip(orig, len(orig)/2)},
		{"FlipHeader", flip(orig, 5)},
		{"FlipLength", flip(orig, 9)},
		{"FlipCRC", flip(orig, len(orig)-1)},
		{"Truncated", orig[:len(orig)-100]},
		{"Empty", []byte{}},
		{"Swapped", other}, // a valid chunk object under the wrong id
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.b.Put(ctx, key, tc.obj); err != nil {
				t.Fatal(err)
			}
			defer e.b.Put(ctx, key, orig)
			if _, problems := verify(t, r, false); len(problems) != 0 {
				t.Errorf("verify without reading data: %v (the object exists)", problems)
			}
			res, problems := verify(t, r, true)
			if len(problems) != 1 || res.CorruptChunks != 1 {
				t.Fatalf("verify --read-data: %d corrupt, problems %v; want exactly one", res.CorruptChunks, problems)
			}
			wantChunkError(t, "verify", problems[0], m, "disk0", off, id, repo.ErrCorrupt)
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

	// Repair: the corrupt chunk is deleted; a new backup uploads it again,
	// which makes the old backup whole too (same content, same id).
	if err := e.b.Put(ctx, key, flip(orig, len(orig)/3)); err != nil {
		t.Fatal(err)
	}
	var problems []error
	res, err := r.Verify(ctx, repo.VerifyOptions{ReadData: true, Repair: true}, func(p error) { problems = append(problems, p) })
	if err != nil || res.Deleted != 1 || len(problems) != 1 {
		t.Fatalf("verify --repair: %+v, problems %v, %v", res, problems, err)
	}
	if _, err := e.b.Size(ctx, key); err == nil {
		t.Fatal("repair left the corrupt chunk")
	}
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	if m2.Stats.ChunksNew != 1 {
		t.Errorf("backup after repair uploaded %d chunks, want 1", m2.Stats.ChunksNew)
	}
	if got := restore(t, r, m, "disk0"); !bytes.Equal(got, im.snapshot()) {
		t.Error("old backup does not restore after the chunk came back")
	}
	verifyClean(t, r)
}

// testMissingChunk: a deleted chunk is reported by Verify (no data read
// needed) and Restore, named; the next incremental backup notices the
// repository lacks it, reads that chunk again and uploads it.
func testMissingChunk(t *testing.T, e *env) {
	r := e.init()
	ctx := t.Context()
	im := newImage(14, 1<<20)
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	const i = 4
	if err := e.b.Delete(ctx, chunkKey(v.Chunks[i])); err != nil {
		t.Fatal(err)
	}
	res, problems := verify(t, r, false)
	if len(problems) != 1 || res.MissingChunks != 1 {
		t.Fatalf("verify: %d missing, problems %v; want one", res.MissingChunks, problems)
	}
	wantChunkError(t, "verify", problems[0], m, "disk0", i*ChunkSize, v.Chunks[i], repo.ErrMissingChunk)
	_, err := tryRestore(ctx, r, m, "disk0")
	wantChunkError(t, "restore", err, m, "disk0", i*ChunkSize, v.Chunks[i], repo.ErrMissingChunk)

	im.resetReads()
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v, Dirty: []repo.Range{}}})
	checkReads(t, im, []int64{i * ChunkSize})
	if m2.Stats.ChunksNew != 1 {
		t.Errorf("incremental after a lost chunk uploaded %d, want 1", m2.Stats.ChunksNew)
	}
	for _, mm := range []*repo.Manifest{m, m2} {
		if got := restore(t, r, mm, "disk0"); !bytes.Equal(got, im.snapshot()) {
			t.Errorf("backup %s does not restore", mm.ID)
		}
	}
	verifyClean(t, r)
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
			before := len(objects(t, e.b, "chunks/"))
			if _, err := r.Prune(ctx, nil); !errors.As(err, &me) {
				t.Errorf("prune with an unreadable manifest: %v, want a *ManifestError", err)
			}
			if after := len(objects(t, e.b, "chunks/")); after != before {
				t.Errorf("prune swept %d chunks while a manifest was unreadable", before-after)
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
	if st, err := r.Prune(ctx, nil); err != nil || st.ChunksDeleted == 0 {
		t.Fatalf("prune after forget: %+v, %v", st, err)
	}
	verifyClean(t, r)
}
