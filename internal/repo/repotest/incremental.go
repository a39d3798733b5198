package repotest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/repo"
)

// testIncremental: with a previous backup and dirty ranges, exactly the
// chunks touching a dirty range are read; every backup restores to the
// source as it was.
func testIncremental(t *testing.T, e *env) {
	r := e.init()
	im := newImage(5, 4<<20) // 64 chunks
	m1 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	want1 := im.snapshot()
	v1, _ := m1.Volume("disk0")

	cs := int64(ChunkSize)
	dirty := []blockdev.Range{
		rng(im.write(3*cs+4096, 4096, false)),
		rng(im.write(10*cs, 512, false)),
		rng(im.write(10*cs+60000, 100, false)), // same chunk twice
		rng(im.write(21*cs-2048, 4096, false)), // spans chunks 20 and 21
		rng(im.write(30*cs, cs, true)),         // zeroed
		rng(im.write(40*cs, 0, false)),         // empty range: nothing
	}
	im.resetReads()
	m2 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v1, Dirty: dirty}})
	want2 := im.snapshot()
	v2, _ := m2.Volume("disk0")
	wantReads := []int64{3 * cs, 10 * cs, 20 * cs, 21 * cs, 30 * cs}
	checkReads(t, im, wantReads)
	if st := m2.Stats; st.ChunksRead != 5 || st.ChunksReused != 59 || st.BytesReused != 59*cs || st.BytesTotal != 64*cs {
		t.Errorf("incremental stats %+v, want 5 read and 59 reused", st)
	}
	if !v2.Chunks[30].IsNull() {
		t.Error("a chunk zeroed since the previous backup is not the null id")
	}

	// Nothing changed (an empty, non-nil dirty list): nothing is read.
	im.resetReads()
	m3 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v2, Dirty: []blockdev.Range{}}})
	checkReads(t, im, nil)
	v3, _ := m3.Volume("disk0")
	if !slices.Equal(v3.Chunks, v2.Chunks) || m3.Stats.BytesStored != 0 {
		t.Errorf("unchanged incremental: ids differ or %d bytes stored", m3.Stats.BytesStored)
	}

	// A previous backup without a dirty list: everything is read, nothing stored.
	im.resetReads()
	m4 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v2}})
	if reads, _ := im.readOffsets(); len(reads) != 64 || m4.Stats.ChunksNew != 0 {
		t.Errorf("prev without dirty ranges: %d chunks read, %d new; want 64 and 0", len(reads), m4.Stats.ChunksNew)
	}

	// Dirty ranges past the end are clipped.
	im.resetReads()
	m5 := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{Prev: v2,
		Dirty: []blockdev.Range{{Off: im.Size() - 10, Len: math.MaxInt64}, {Off: im.Size() + cs, Len: cs}}}})
	checkReads(t, im, []int64{63 * cs})

	for _, c := range []struct {
		m    *repo.Manifest
		want []byte
	}{{m1, want1}, {m2, want2}, {m3, want2}, {m4, want2}, {m5, want2}} {
		if got := restore(t, r, c.m, "disk0"); !bytes.Equal(got, c.want) {
			t.Errorf("restore of backup %s differs from the source at that time", c.m.ID)
		}
	}

	// The volume grew by 100 KiB: old chunks are reused, the new tail is read.
	grown := &image{data: append(slices.Clone(want2), make([]byte, 100<<10)...), reads: map[int64]int{}, rng: im.rng}
	grown.write(64*cs, 100<<10, false)
	m6 := backup(t, r, repo.BackupOptions{}, vol{"disk0", grown, repo.VolumeOptions{Prev: v2,
		Dirty: []blockdev.Range{{Off: 64 * cs, Len: 100 << 10}}}})
	checkReads(t, grown, []int64{64 * cs, 65 * cs})
	if got := restore(t, r, m6, "disk0"); !bytes.Equal(got, grown.snapshot()) {
		t.Error("restore of the grown volume differs")
	}
	// Bad dirty ranges are refused.
	b, err := r.NewBackup(t.Context(), repo.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.AddVolume(t.Context(), "disk0", im, repo.VolumeOptions{Prev: v2, Dirty: []blockdev.Range{{Off: -1, Len: 5}}}); !errors.Is(err, repo.ErrInvalid) {
		t.Errorf("negative dirty range: %v, want ErrInvalid", err)
	}
	if _, err := b.AddVolume(t.Context(), "bad/name", im, repo.VolumeOptions{}); !errors.Is(err, repo.ErrInvalid) {
		t.Errorf("bad volume name: %v, want ErrInvalid", err)
	}
	verifyClean(t, r)
}

func rng(off, n int64) blockdev.Range { return blockdev.Range{Off: off, Len: n} }

// checkReads fails unless exactly the offsets in want were read, once each.
func checkReads(t *testing.T, im *image, want []int64) {
	t.Helper()
	got, twice := im.readOffsets()
	gotList := slices.Sorted(maps.Keys(got))
	if !slices.Equal(gotList, want) || twice {
		t.Errorf("chunks read at %v (some twice: %v), want %v", gotList, twice, want)
	}
}

// testInterrupted: a backup cancelled midway commits nothing, leaves no
// lock, and the next backup stores only what the first did not: it reads
// the headers of the packs no index names and indexes them.
func testInterrupted(t *testing.T, e *env) {
	r := e.init()
	im := newImage(8, 4<<20)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reads := 0
	im.hook = func(int64) error {
		if reads++; reads == 32 {
			cancel()
		}
		return nil
	}
	b, err := r.NewBackup(ctx, repo.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddVolume(ctx, "disk0", im, repo.VolumeOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddVolume with ctx cancelled midway: %v, want context.Canceled", err)
	}
	if _, err := b.Commit(t.Context()); err == nil {
		t.Fatal("Commit of a failed backup succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if ids, err := r.IDs(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("backups after an interrupted one: %v, %v", ids, err)
	}
	if got := objects(t, e.b, "locks/"); len(got) != 0 {
		t.Fatalf("interrupted backup left locks: %v", got)
	}
	res, problems := verify(t, r, false)
	uploaded := res.Unreferenced // the chunks in the packs stored before the cancel
	if len(problems) != 0 || uploaded == 0 || res.OrphanPacks == 0 {
		t.Fatalf("after the interrupted backup: %+v, %v; want orphan packs and no problem", res, problems)
	}
	im.hook = nil
	m := backup(t, r, repo.BackupOptions{}, vol{"disk0", im, repo.VolumeOptions{}})
	v, _ := m.Volume("disk0")
	d := distinct(v)
	if got, want := m.Stats.ChunksNew, int64(d-uploaded); got != want {
		t.Errorf("backup after an interrupted one stored %d chunks, want %d (%d were there)", got, want, uploaded)
	}
	if res := verifyClean(t, r); res.Unreferenced != 0 || res.OrphanPacks != 0 {
		t.Errorf("after the next backup: %+v; want the interrupted backup's packs indexed and used", res)
	}
	if got := restore(t, r, m, "disk0"); !bytes.Equal(got, im.snapshot()) {
		t.Error("restore differs")
	}
}
