package mirror

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// watchdog bounds a wait that must end; it is a hang detector, not a
// timing assertion.
const watchdog = 20 * time.Second

// blocked starts a write of 8 KiB at chunk c that the block policy holds
// back (the replica is down) and returns its result channel once the
// mirror has left in-sync.
func blocked(t *testing.T, s *setup, c int64) <-chan error {
	t.Helper()
	waitState(t, s.m, StateInSync)
	s.rep.down.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.dev.WriteAt(context.Background(), bytes.Repeat([]byte{0x5A}, 8192), c*ChunkSize, 0) }()
	waitState(t, s.m, StateDegraded)
	select {
	case err := <-done:
		t.Fatalf("policy block: the write returned (%v) while the replica was down", err)
	default:
	}
	return done
}

func result(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(watchdog):
		t.Fatalf("%s: the write still waits after %v", what, watchdog)
		return nil
	}
}

// degradeRecorder counts OnDegrade calls.
func degradeRecorder(n *atomic.Int64) func(*Options) {
	return func(o *Options) { o.OnDegrade = func(error) error { n.Add(1); return nil } }
}

// A pause acknowledges the write the block policy held back, after the
// divergence was recorded (the record's flag, then the ack).
func TestBlockedWritePause(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Block, false, degradeRecorder(&recorded))
	done := blocked(t, s, 3)
	s.m.Pause()
	if err := result(t, done, "after pause"); err != nil {
		t.Fatalf("after pause: %v, want the write acknowledged", err)
	}
	if recorded.Load() == 0 {
		t.Fatal("a write the replica lacks was acknowledged after pause without the divergence recorded")
	}
	if !hasChunk(s.j, 3) {
		t.Fatal("the dirty log lacks the chunk of the write acknowledged while paused")
	}
}

// Release (mirror rm) acknowledges the write: no replica is required any
// more.
func TestBlockedWriteRelease(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	done := blocked(t, s, 3)
	s.m.Release()
	if err := result(t, done, "after release"); err != nil {
		t.Fatalf("after release: %v, want the write acknowledged", err)
	}
	if err := s.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// StopWaits (the daemon stops) fails the write instead of acknowledging
// it; its chunk stays in the dirty log. A later write that would wait fails
// at once, and so does a flush.
func TestBlockedWriteStopWaits(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	done := blocked(t, s, 3)
	s.m.StopWaits()
	if err := result(t, done, "after StopWaits"); !errors.Is(err, ErrStopping) {
		t.Fatalf("after StopWaits: %v, want ErrStopping", err)
	}
	if err := s.dev.WriteAt(t.Context(), make([]byte, 512), 7*ChunkSize, 0); !errors.Is(err, ErrStopping) {
		t.Fatalf("a write after StopWaits: %v, want ErrStopping", err)
	}
	if err := s.dev.Flush(t.Context()); !errors.Is(err, ErrStopping) {
		t.Fatalf("a flush after StopWaits: %v, want ErrStopping", err)
	}
	if !hasChunk(s.j, 3) || !hasChunk(s.j, 7) {
		t.Fatal("the dirty log lacks the chunks of the failed writes")
	}
}

// Close fails the write (ErrClosed) and returns although the replica is
// gone.
func TestBlockedWriteClose(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	done := blocked(t, s, 3)
	ctx, cancel := context.WithTimeout(t.Context(), watchdog)
	defer cancel()
	if err := s.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := result(t, done, "after close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
}

// Close does not wait for a write whose replica request hangs (a replica
// that swallows requests until their timeout, here an hour): the replica
// is dropped and the workers stop.
func TestCloseDoesNotWaitForHungRequest(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false, func(o *Options) { o.Timeout, o.Checkpoint = time.Hour, time.Hour })
	waitState(t, s.m, StateInSync)
	s.rep.hang.Store(true)
	go s.dev.WriteAt(context.Background(), make([]byte, 512), 0, 0) // hangs on the replica
	for len(s.inflight()) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), watchdog)
	defer cancel()
	if err := s.m.Close(ctx); err != nil {
		t.Fatalf("close with a hung request: %v", err)
	}
}

func (s *setup) inflight() map[uint64]blockdev.Range {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	out := map[uint64]blockdev.Range{}
	for k, v := range s.m.inflight {
		out[k] = v
	}
	return out
}

// Policy block: a FLUSH returns only once every write acknowledged before
// it is durable on the replica. Here the replica loses what it had not
// flushed and comes back; while the resync is held up, a FLUSH must not
// succeed (before the fix it flushed the new connection and returned).
func TestBlockFlushWaitsForResync(t *testing.T) {
	s := newSetup(t, testSize, Block, false, func(o *Options) { o.Checkpoint = time.Hour })
	waitState(t, s.m, StateInSync)
	w := bytes.Repeat([]byte{0xC3}, 4096)
	if err := s.dev.WriteAt(t.Context(), w, 5*ChunkSize, 0); err != nil { // through, not flushed
		t.Fatal(err)
	}
	s.rep.down.Store(true)
	s.rep.lose(t)
	w2 := make(chan error, 1)
	go func() { w2 <- s.dev.WriteAt(context.Background(), w, 9*ChunkSize, 0) }() // finds the replica gone
	waitState(t, s.m, StateDegraded)
	stall := make(chan struct{})
	s.rep.stall.Store(&stall)
	s.rep.down.Store(false)
	for !s.m.Status().Connected {
		time.Sleep(time.Millisecond)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.dev.Flush(context.Background()) }()
	select {
	case err := <-flushed:
		// Returned while the resync cannot write: the replica must
		// still hold the write durably, which it cannot.
		got := make([]byte, len(w))
		s.rep.durable.ReadAt(t.Context(), got, 5*ChunkSize)
		t.Fatalf("FLUSH returned (%v) while the replica lacked an acknowledged write (durable copy holds it: %v)", err, bytes.Equal(got, w))
	case <-time.After(100 * time.Millisecond):
	}
	close(stall)
	if err := result(t, flushed, "flush after the resync"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(w))
	if err := s.rep.durable.ReadAt(t.Context(), got, 5*ChunkSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Fatal("FLUSH succeeded but the replica's durable copy lacks a write acknowledged before it")
	}
	if err := result(t, w2, "the write made while the replica was gone"); err != nil {
		t.Fatal(err)
	}
}

// A FUA write the block policy held back is acknowledged only once the
// replica flushed it.
func TestBlockFUAWriteDurableOnReplica(t *testing.T) {
	s := newSetup(t, testSize, Block, false, func(o *Options) { o.Checkpoint = time.Hour })
	waitState(t, s.m, StateInSync)
	s.rep.down.Store(true)
	w := bytes.Repeat([]byte{0x3C}, 4096)
	done := make(chan error, 1)
	go func() { done <- s.dev.WriteAt(context.Background(), w, 6*ChunkSize, 1) }()
	waitState(t, s.m, StateDegraded)
	s.rep.down.Store(false)
	if err := result(t, done, "FUA write after the replica returned"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(w))
	if err := s.rep.durable.ReadAt(t.Context(), got, 6*ChunkSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Fatal("a FUA write was acknowledged before the replica made it durable")
	}
}

// Policy degrade: a FLUSH the replica cannot complete records the
// divergence before it succeeds.
func TestDegradeFlushRecordsDivergence(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Degrade, false, degradeRecorder(&recorded), func(o *Options) { o.Checkpoint = time.Hour })
	waitState(t, s.m, StateInSync)
	s.m.checkpointNow(t) // no checkpoint runs after this one
	// A write through to the replica, not flushed there.
	if err := s.dev.WriteAt(t.Context(), make([]byte, 4096), 0, 0); err != nil {
		t.Fatal(err)
	}
	fail := func() error { return errDown }
	s.rep.flushHook.Store(&fail)
	if err := s.dev.Flush(t.Context()); err != nil {
		t.Fatalf("policy degrade: flush %v, want success", err)
	}
	if recorded.Load() == 0 {
		t.Fatal("a FLUSH succeeded without the replica and without recording the divergence")
	}
	if !hasChunk(s.j, 0) {
		t.Fatal("the dirty log lacks the chunk the replica may not have made durable")
	}
}

// The checkpoint resets the dirty log only after a replica flush succeeded:
// a failing flush finds the dirty log still holding what it covers.
func TestCheckpointFlushesBeforeReset(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false, func(o *Options) { o.Checkpoint = time.Hour })
	waitState(t, s.m, StateInSync)
	s.m.checkpointNow(t) // no checkpoint runs after this one but ours
	fill(t, s.dev, 2*ChunkSize, 4096, 3)
	// The first failing flush is the checkpoint's (later ones come from
	// the resync after it).
	var held atomic.Int64
	held.Store(-1)
	hook := func() error {
		held.CompareAndSwap(-1, int64(len(s.j.Ranges())))
		return errDown
	}
	s.rep.flushHook.Store(&hook)
	s.m.checkpoint()
	switch held.Load() {
	case -1:
		t.Fatal("the checkpoint did not flush the replica")
	case 0:
		t.Fatal("the checkpoint reset the dirty log before the replica flush succeeded")
	}
}

func hasChunk(j *dirtyLog, c int64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.set[c]
}

// Policy degrade: a FLUSH the replica cannot complete records no
// divergence when the replica lacks nothing (the dirty log was reset after
// a flush covered everything), so a failover after it is no split brain.
func TestDegradeFlushNothingLacking(t *testing.T) {
	var recorded atomic.Int64
	s := newSetup(t, testSize, Degrade, false, degradeRecorder(&recorded))
	waitState(t, s.m, StateInSync)
	deadline := time.Now().Add(watchdog)
	for len(s.j.Ranges()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("dirty log still holds %v", s.j.Ranges())
		}
		time.Sleep(time.Millisecond)
	}
	fail := func() error { return errDown }
	s.rep.flushHook.Store(&fail)
	if err := s.dev.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if recorded.Load() != 0 {
		t.Fatal("a FLUSH recorded a divergence although the replica lacked nothing")
	}
}

// Pause ends the connection without a flush: what it was sent since the
// last checkpoint is resent after resume.
func TestPauseResendsUnflushed(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false, func(o *Options) { o.Checkpoint = time.Hour })
	waitState(t, s.m, StateInSync)
	s.m.checkpointNow(t)
	fill(t, s.dev, 4*ChunkSize, 4096, 8) // through, not flushed
	s.m.Pause()
	if got := s.m.Status().BytesToSync; got < ChunkSize {
		t.Fatalf("after pause %d bytes to sync, want the chunk written since the last checkpoint", got)
	}
}

// checkpointNow runs checkpoints until one reset the dirty log and none
// runs (one may be running already: the end of the first copy starts one).
func (m *Mirror) checkpointNow(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(watchdog)
	for {
		m.checkpoint()
		m.mu.Lock()
		running := m.ckpt
		m.mu.Unlock()
		if len(m.opts.DirtyLog.Ranges()) == 0 && !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint reset the dirty log: it holds %v", m.opts.DirtyLog.Ranges())
		}
		time.Sleep(time.Millisecond)
	}
}
