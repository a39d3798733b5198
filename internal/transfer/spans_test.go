package transfer

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

func TestSpans(t *testing.T) {
	got := chunks([]blockdev.Range{{Off: 100, Len: 3000}, {Off: 5000, Len: 10}}, 1024)
	want := []blockdev.Range{{Off: 100, Len: 924}, {Off: 1024, Len: 1024}, {Off: 2048, Len: 1024}, {Off: 3072, Len: 28}, {Off: 5000, Len: 10}}
	if len(got) != len(want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("chunks %v, want %v", got, want)
		}
	}
	al := alignSpans([]blockdev.Range{{Off: 100, Len: 10}, {Off: 600, Len: 10}, {Off: 5000, Len: 10}}, 512, 5100)
	wantAl := []blockdev.Range{{Off: 0, Len: 1024}, {Off: 4608, Len: 492}}
	if len(al) != 2 || al[0] != wantAl[0] || al[1] != wantAl[1] {
		t.Fatalf("alignSpans %v, want %v", al, wantAl)
	}
}

func TestDataSpansSkipsHoles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(64 << 20)
	f.WriteAt([]byte{1}, 32<<20)
	spans := dataSpans(f, 64<<20)
	var total int64
	for _, s := range spans {
		total += s.Len
		if s.Off > 32<<20 || s.Off+s.Len <= 32<<20 {
			t.Errorf("span %v does not cover the data byte", s)
		}
	}
	if len(spans) != 1 || total >= 64<<20 {
		t.Fatalf("spans %v: holes not skipped", spans)
	}
}

func TestParseProgress(t *testing.T) {
	var got []float64
	w := &progressWriter{onPct: func(p float64) { got = append(got, p) }}
	io.WriteString(w, "    (0.00/100%)\r    (12.")
	io.WriteString(w, "50/100%)\r    (100.00/100%)\nqemu-img: noise\n")
	if len(got) != 3 || got[0] != 0 || got[1] != 12.5 || got[2] != 100 {
		t.Fatalf("got %v", got)
	}
}
