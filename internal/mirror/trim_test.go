package mirror

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
)

// holdChunk keeps the copier off chunk c (it counts as written) until
// the returned func is called, so a trimmed chunk stays dirty while a
// test looks at it.
func (s *setup) holdChunk(c int64) (release func()) {
	s.m.mu.Lock()
	s.m.writers[c]++
	s.m.mu.Unlock()
	return func() {
		s.m.mu.Lock()
		if s.m.writers[c]--; s.m.writers[c] <= 0 {
			delete(s.m.writers, c)
		}
		s.m.cond.Broadcast()
		s.m.mu.Unlock()
	}
}

// Policy degrade, in sync: a trim sends nothing to the replica, but it is
// no divergence (the trimmed range's content is unspecified, so the old
// bytes the replica holds lack no acknowledged write): OnDegrade is not
// called. A write to the trimmed chunk before the copier got to it goes
// through. The copier then makes the replica equal to the volume.
func TestTrimInSyncNoDivergence(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Degrade, false, degradeRecorder(&recorded))
	waitState(t, s.m, StateInSync)
	release := s.holdChunk(2)
	if err := s.dev.Trim(t.Context(), 2*ChunkSize, 3*ChunkSize, 0); err != nil { // chunks 2..4
		t.Fatal(err)
	}
	if s.m.Status().BytesToSync == 0 {
		t.Fatal("a trim left nothing to copy: the replica would keep the old bytes")
	}
	through := s.m.through.Load()
	w := bytes.Repeat([]byte{0x7E}, 4096)
	if err := s.dev.WriteAt(t.Context(), w, 2*ChunkSize+8192, 0); err != nil {
		t.Fatal(err)
	}
	if s.m.through.Load() != through+1 {
		t.Fatal("a write to a chunk dirty only from a trim did not go through to the replica")
	}
	got := make([]byte, len(w))
	if err := s.rep.dev.ReadAt(t.Context(), got, 2*ChunkSize+8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Fatal("a write through was acknowledged before the replica had it")
	}
	if n := recorded.Load(); n != 0 {
		t.Fatalf("a trim (and a write through after it) recorded a divergence (%d OnDegrade calls)", n)
	}
	release()
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
	if n := recorded.Load(); n != 0 {
		t.Fatalf("trims recorded a divergence (%d OnDegrade calls)", n)
	}

	// A write the replica lacks still records one, as before.
	s.rep.down.Store(true)
	fill(t, s.dev, 6*ChunkSize, 4096, 9)
	if n := recorded.Load(); n != 1 {
		t.Fatalf("a write acknowledged with the replica down: %d OnDegrade calls, want 1", n)
	}
	s.rep.down.Store(false)
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}

// Policy degrade: a FLUSH right after a trim, while the trimmed chunk is
// still to copy, flushes the replica and records no divergence.
func TestDegradeFlushAfterTrim(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Degrade, false, degradeRecorder(&recorded))
	waitState(t, s.m, StateInSync)
	release := s.holdChunk(5)
	defer release()
	if err := s.dev.Trim(t.Context(), 5*ChunkSize, 4096, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.dev.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := recorded.Load(); n != 0 {
		t.Fatalf("a FLUSH after a trim recorded a divergence (%d OnDegrade calls)", n)
	}
}

// Policy block: a trim does not wait for a replica that is down (it is no
// write the replica lacks), while a write made then still waits for it.
func TestBlockTrimDoesNotWait(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	done := blocked(t, s, 3)
	trimmed := make(chan error, 1)
	go func() { trimmed <- s.dev.Trim(context.Background(), 7*ChunkSize, 2*ChunkSize, 0) }()
	if err := result(t, trimmed, "trim with the replica down"); err != nil {
		t.Fatalf("policy block: trim with the replica down: %v, want success", err)
	}
	select {
	case err := <-done:
		t.Fatalf("policy block: the write returned (%v) while the replica was down", err)
	default:
	}
	s.rep.down.Store(false)
	if err := result(t, done, "the write after the replica returned"); err != nil {
		t.Fatal(err)
	}
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}

// A write through to a chunk dirty only from a trim that the replica
// fails is a write the replica lacks: the divergence is recorded.
func TestTrimmedChunkFailedWriteDiverges(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Degrade, false, degradeRecorder(&recorded))
	waitState(t, s.m, StateInSync)
	release := s.holdChunk(4)
	if err := s.dev.Trim(t.Context(), 4*ChunkSize, ChunkSize, 0); err != nil {
		t.Fatal(err)
	}
	s.rep.down.Store(true)
	fill(t, s.dev, 4*ChunkSize, 4096, 11)
	if n := recorded.Load(); n != 1 {
		t.Fatalf("a write the replica failed: %d OnDegrade calls, want 1", n)
	}
	release()
	s.rep.down.Store(false)
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}
