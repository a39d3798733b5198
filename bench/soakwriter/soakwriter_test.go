package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestFillClassify(t *testing.T) {
	p, scratch := make([]byte, blockSize), make([]byte, blockSize)
	fill(p, 5<<seqSession|7, 42)
	if seq, ok := classify(p, 42, scratch); !ok || seq != 5<<seqSession|7 {
		t.Fatalf("classify(fill(seq, 42), 42) = %d, %v", seq, ok)
	}
	if _, ok := classify(p, 43, scratch); ok {
		t.Fatal("a block written at 42 passed as block 43")
	}
	p[blockSize-1] ^= 1
	if _, ok := classify(p, 42, scratch); ok {
		t.Fatal("a corrupt block passed")
	}
	if seq, ok := classify(make([]byte, blockSize), 9, scratch); !ok || seq != 0 {
		t.Fatalf("zeros: %d, %v", seq, ok)
	}
}

// parse writes a log and parses it.
func parse(t *testing.T, strict bool, lines ...string) *session {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	var b []byte
	for _, l := range append([]string{"S 1 4096"}, lines...) {
		b = append(b, l+"\n"...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := parseLog(path, strict)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDurability(t *testing.T) {
	s := parse(t, false,
		"I 1 W 0 0 2", // acknowledged before flush 3 was sent: durable
		"A 1",
		"I 2 W 0 4 1", // acknowledged after flush 3 was sent: not covered
		"I 3 F 0 0 0",
		"A 2",
		"A 3",
		"I 4 W 1 8 1", // FUA: durable
		"A 4",
		"I 5 W 0 9 1", // never acknowledged
		"I 6 F 0 0 0", // covers nothing new, never acknowledged
		"I 7 W 0 10 1",
		"E 7 connection lost",
	)
	want := map[uint64]bool{1: true, 2: false, 4: true, 5: false, 7: false}
	for _, o := range s.ops {
		if w, ok := want[o.seq]; ok && o.durable != w {
			t.Errorf("seq %d: durable %v, want %v", o.seq, o.durable, w)
		}
	}
	if s := parse(t, true, "I 1 W 0 0 1", "A 1", "I 2 W 0 1 1"); !s.ops[0].durable || s.ops[1].durable {
		t.Errorf("strict: an acknowledged write must be durable, an unacknowledged one not")
	}
}

func TestCandidates(t *testing.T) {
	s := parse(t, false,
		"I 1 W 0 0 1", "A 1", "I 2 F 0 0 0", "A 2", // block 0: 1 durable
		"I 3 W 0 0 1", "A 3", // then 3, not flushed
		"I 4 T 1 0 1", "A 4", // then a durable trim: zeros or what was there
		"I 5 Z 0 1 1", "I 6 F 0 0 0", // block 1: zeroes in flight
	)
	c := s.candidates(0, 99)
	if !slices.Equal(c.values, []uint64{0, 3, 1}) || c.durable != 0 || c.anything {
		t.Errorf("block 0: %+v, want values [0 3 1] down to the durable write 1", c)
	}
	c = s.candidates(1, 99)
	if !slices.Equal(c.values, []uint64{0, 99}) || c.durable != -1 {
		t.Errorf("block 1: %+v, want zeros or the baseline 99", c)
	}
	if c := s.candidates(2, unknown); !c.anything {
		t.Errorf("block 2 with an unknown baseline: %+v, want anything", c)
	}
}
