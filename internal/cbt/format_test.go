package cbt

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := &Header{Volume: "vm1-disk0", Size: 20 << 30, Bitmaps: []Entry{
		{Name: "cbt", Created: time.Unix(1700000000, 123).UTC()},
		{Name: "backup.daily_1", Created: time.Unix(1800000000, 0).UTC()},
	}}
	b, err := encodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("DecodeHeader = %+v, want %+v", got, h)
	}
}

func TestHeaderValidate(t *testing.T) {
	ok := func() *Header { return &Header{Volume: "v", Size: 1 << 20, Bitmaps: []Entry{{Name: "a"}}} }
	for _, tc := range []struct {
		name string
		mod  func(h *Header)
	}{
		{"BadVolume", func(h *Header) { h.Volume = "" }},
		{"ZeroSize", func(h *Header) { h.Size = 0 }},
		{"HugeSize", func(h *Header) { h.Size = 1<<60 + 1 }},
		{"BadName", func(h *Header) { h.Bitmaps[0].Name = ".a" }},
		{"Repeated", func(h *Header) { h.Bitmaps = append(h.Bitmaps, Entry{Name: "a"}) }},
		{"TooMany", func(h *Header) {
			for i := range MaxBitmaps {
				h.Bitmaps = append(h.Bitmaps, Entry{Name: "b" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ok()
			tc.mod(h)
			if err := h.Validate(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Validate = %v, want ErrCorrupt", err)
			}
			if _, err := encodeHeader(h); err == nil {
				t.Error("encodeHeader accepted an invalid header")
			}
		})
	}
	if err := ok().Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func TestHeaderDetectsDamage(t *testing.T) {
	b, err := encodeHeader(&Header{Volume: "v", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 8, 12, 16, 24, 40, 200, 4091, 4092} {
		c := slices.Clone(b)
		c[i] ^= 0x20
		if _, err := DecodeHeader(c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: DecodeHeader = %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := DecodeHeader(b[:100]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short header: %v", err)
	}
}

func TestRecordRoundTripAndDamage(t *testing.T) {
	r := &Record{Seq: 7, Size: 1 << 30, ExtentSize: 4 << 20, Extents: []int64{200, 3, 17}}
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{3, 17, 200}; !slices.Equal(got.Extents, want) || got.Seq != 7 || got.Clean {
		t.Errorf("DecodeRecord = %+v", got)
	}
	for _, i := range []int{0, 9, 13, 16, 24, 33, 37, 40, 56, 4000, 4094} {
		c := slices.Clone(b)
		c[i] ^= 4
		if _, err := DecodeRecord(c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: DecodeRecord = %v, want ErrCorrupt", i, err)
		}
	}
	for _, bad := range []*Record{
		{Seq: 0, Size: 1 << 30, ExtentSize: 4 << 20},
		{Seq: 1, Size: 1 << 30, ExtentSize: 3 << 20},
		{Seq: 1, Size: 1 << 30, ExtentSize: 4 << 20, Extents: []int64{256}}, // past the end
		{Seq: 1, Size: 1 << 30, ExtentSize: 4 << 20, Extents: []int64{1, 1}},
		{Seq: 1, Size: 1 << 30, ExtentSize: 4 << 20, Clean: true, Extents: []int64{1}},
		{Seq: 1, Size: 1 << 40, ExtentSize: 64 << 10, Extents: make([]int64, maxALEntries+1)},
	} {
		if _, err := encodeRecord(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("encodeRecord(%+v) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestNewestRecordPicksHighestValidSeq(t *testing.T) {
	rec := func(seq uint64, ext ...int64) []byte {
		b, err := encodeRecord(&Record{Seq: seq, Size: 1 << 30, ExtentSize: 4 << 20, Extents: ext})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	img := append(rec(4, 1), rec(5, 2)...)
	if r, _ := newestRecord(img); r == nil || r.Seq != 5 {
		t.Errorf("newest of 4 and 5 = %+v", r)
	}
	torn := slices.Clone(img)
	copy(torn[pageSize:], rec(7, 9)[:2000]) // seq 7 half written over 5
	if r, _ := newestRecord(torn); r == nil || r.Seq != 4 {
		t.Errorf("with slot 1 torn: %+v, want seq 4", r)
	}
	swapped := append(rec(5, 2), rec(4, 1)...) // a record in the wrong slot is not trusted
	if r, errs := newestRecord(swapped); r != nil || len(errs) != 2 {
		t.Errorf("records in the wrong slots: %+v %v", r, errs)
	}
	if r, errs := newestRecord(nil); r != nil || len(errs) != 2 {
		t.Errorf("no AL file: %+v %v", r, errs)
	}
}

func TestPageRoundTripAndDamage(t *testing.T) {
	words := make([]uint64, pageWords)
	for i := range words {
		words[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	p := make([]byte, pageSize)
	encodePage(p, words, 42)
	got := make([]uint64, pageWords)
	if err := decodePage(p, got, 42); err != nil || !slices.Equal(got, words) {
		t.Fatalf("decodePage = %v", err)
	}
	if err := decodePage(p, got, 43); !errors.Is(err, ErrCorrupt) {
		t.Errorf("page at the wrong index: %v", err)
	}
	p[77] ^= 1
	if err := decodePage(p, got, 42); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped bit: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"cbt", true}, {"backup-2026.01_a", true}, {"0", true},
		{"", false}, {"-a", false}, {".a", false}, {"a/b", false}, {"a:b", false}, {"é", false},
		{string(make([]byte, 65)), false},
	} {
		if err := CheckName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// FuzzDecodeHeader: no input panics; what decodes re-encodes to the same
// page (the decoder accepts only what the encoder writes).
func FuzzDecodeHeader(f *testing.F) {
	b, _ := encodeHeader(&Header{Volume: "v", Size: 1 << 30, Bitmaps: []Entry{{Name: "cbt", Created: time.Unix(1, 0)}}})
	f.Add(b)
	f.Add(b[:64])
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := DecodeHeader(in)
		if err != nil {
			return
		}
		out, err := encodeHeader(h)
		if err != nil {
			t.Fatalf("decoded header does not encode: %v", err)
		}
		h2, err := DecodeHeader(out)
		if err != nil || !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip: %+v -> %+v (%v)", h, h2, err)
		}
	})
}

// FuzzDecodeRecord: no input panics; what decodes re-encodes and decodes
// to the same record.
func FuzzDecodeRecord(f *testing.F) {
	b, _ := encodeRecord(&Record{Seq: 3, Size: 1 << 30, ExtentSize: 4 << 20, Extents: []int64{1, 5}})
	f.Add(b)
	c, _ := encodeRecord(&Record{Seq: 4, Clean: true, Size: 5 << 20, ExtentSize: 64 << 10})
	f.Add(c)
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeRecord(in)
		if err != nil {
			newestRecord(in)
			return
		}
		out, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := DecodeRecord(out)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %+v -> %+v (%v)", r, r2, err)
		}
	})
}

// FuzzLoad: any pair of file images loads without panicking, and a load
// that succeeds yields bitmaps whose extents cover the volume.
func FuzzLoad(f *testing.F) {
	ms := &memStore{}
	s := newState(testOpts(3<<20, 4), ms)
	if _, err := s.Enable("a", time.Unix(1, 0)); err != nil {
		f.Fatal(err)
	}
	tr := New(memdev.New(3<<20, false), s)
	tr.WriteAt(f.Context(), make([]byte, 4096), 1<<20, 0)
	f.Add(ms.bm, ms.al)
	s.Close()
	f.Add(ms.bm, ms.al)
	f.Fuzz(func(t *testing.T, bm, al []byte) {
		st := newState(testOpts(3<<20, 4), &memStore{bm: bm, al: al})
		if err := st.load(); err != nil {
			return
		}
		for _, n := range st.Names() {
			dirtyBlocks(t, st, n)
		}
	})
}
