package mirror

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

const testSize = 8 << 20

func TestFilterConformance(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		rep := newReplica(size)
		m, err := New(Options{Volume: "v", Size: size, Policy: Degrade, Dial: rep.dial, Synced: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		return m.Filter(memdev.New(size, false))
	})
}

// The first copy runs while writes go on; in sync, both sides are equal.
func TestInitialSyncUnderWrites(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked atomic.Int64
	for i := range 4 {
		wg.Add(1)
		go writer(t, s.dev, uint64(i+1), stop, &wg, &acked)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
	if acked.Load() == 0 {
		t.Fatal("no write was acknowledged")
	}
}

// In sync, a write is on the replica when it returns, and FUA reaches it.
func TestInSyncWriteThrough(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false)
	waitState(t, s.m, StateInSync)
	p := make([]byte, 4096)
	for i := range p {
		p[i] = 0xA5
	}
	if err := s.dev.WriteAt(t.Context(), p, 12288, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := s.rep.dev.ReadAt(t.Context(), got, 12288); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0xA5 || got[4095] != 0xA5 {
		t.Fatalf("replica holds %#x..%#x after the acknowledged write", got[0], got[4095])
	}
	if s.rep.fuaSeen.Load() == 0 {
		t.Fatal("FUA did not reach the replica")
	}
	before := s.rep.dev.Flushes.Load()
	if err := s.dev.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.rep.dev.Flushes.Load() == before {
		t.Fatal("flush did not reach the replica")
	}
}

// Policy degrade: writes go on while the replica is down; when it is back
// only the dirty chunks are sent and both sides are equal.
func TestDegradeAndResync(t *testing.T) {
	var degradedCalls atomic.Int64
	s := newSetup(t, testSize, Degrade, false, func(o *Options) {
		o.OnDegrade = func(error) error { degradedCalls.Add(1); return nil }
	})
	waitState(t, s.m, StateInSync)
	s.rep.down.Store(true)
	copiedBefore := s.m.Status().BytesCopied
	// 16 chunks written while down.
	for i := range 16 {
		fill(t, s.dev, int64(i)*4*ChunkSize, 4096, uint64(100+i))
	}
	st := s.m.Status()
	if st.State != StateDegraded {
		t.Fatalf("state %s after writes with the replica down, want degraded", st.State)
	}
	if degradedCalls.Load() != 1 {
		t.Fatalf("OnDegrade ran %d times, want 1", degradedCalls.Load())
	}
	s.rep.down.Store(false)
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
	resent := s.m.Status().BytesCopied - copiedBefore
	// The 16 chunks, plus what the dirty log held since the last checkpoint.
	if resent < 16*ChunkSize || resent > testSize/2 {
		t.Fatalf("resync sent %d bytes for 16 dirty chunks", resent)
	}
}

// Policy block: a write made while the replica is down is not
// acknowledged until the replica has it.
func TestBlockWaitsForReplica(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	waitState(t, s.m, StateInSync)
	s.rep.down.Store(true)
	p := make([]byte, 8192)
	for i := range p {
		p[i] = 0x5A
	}
	done := make(chan error, 1)
	go func() { done <- s.dev.WriteAt(context.Background(), p, 3*ChunkSize+512, 0) }()
	select {
	case err := <-done:
		t.Fatalf("write returned (%v) while the replica was down, policy block", err)
	case <-time.After(200 * time.Millisecond):
	}
	s.rep.down.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if err := s.rep.dev.ReadAt(t.Context(), got, 3*ChunkSize+512); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0x5A || got[len(got)-1] != 0x5A {
		t.Fatal("the write was acknowledged before the replica had it")
	}
}

// Block: a write whose context ends while it waits fails (the client went
// away); it is not acknowledged.
func TestBlockWriteCancelled(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	waitState(t, s.m, StateInSync)
	s.rep.down.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.dev.WriteAt(ctx, make([]byte, 512), 0, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}

// A refused dial stops the mirror in state refused; resume tries again.
func TestRefused(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false)
	waitState(t, s.m, StateInSync)
	s.rep.refuse.Store(true)
	s.rep.down.Store(true)
	fill(t, s.dev, 0, 4096, 9)
	waitState(t, s.m, StateRefused)
	dials := s.rep.dials.Load()
	time.Sleep(50 * time.Millisecond)
	if s.rep.dials.Load() != dials {
		t.Fatal("a refused mirror keeps dialing")
	}
	if s.m.Status().LastError == "" {
		t.Fatal("refused without a last error")
	}
	s.rep.refuse.Store(false)
	s.rep.down.Store(false)
	s.m.Resume()
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}

// Pause stops sending; resume resyncs what was written meanwhile.
func TestPauseResume(t *testing.T) {
	s := newSetup(t, testSize, Block, false)
	waitState(t, s.m, StateInSync)
	s.m.Pause()
	writes := s.rep.writes.Load()
	fill(t, s.dev, ChunkSize, 3*ChunkSize, 11) // policy block does not wait while paused
	if s.m.Status().State != StatePaused || s.rep.writes.Load() != writes {
		t.Fatalf("paused mirror sent data (state %s)", s.m.Status().State)
	}
	s.m.Resume()
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}

// The replica goes down and up again and again under concurrent writes
// of every kind; once it stays up, both sides are equal.
func TestFlappingReplicaUnderLoad(t *testing.T) {
	for _, policy := range []Policy{Degrade, Block} {
		t.Run(string(policy), func(t *testing.T) {
			s := newSetup(t, testSize, policy, false)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var acked atomic.Int64
			for i := range 4 {
				wg.Add(1)
				go writer(t, s.dev, uint64(10+i), stop, &wg, &acked)
			}
			for range 10 {
				time.Sleep(15 * time.Millisecond)
				s.rep.down.Store(true)
				time.Sleep(15 * time.Millisecond)
				s.rep.down.Store(false)
			}
			close(stop)
			wg.Wait()
			waitState(t, s.m, StateInSync)
			sameContent(t, s.local, s.rep.dev)
		})
	}
}

// The checkpoint resets the dirty log while in sync.
func TestCheckpointResetsDirtyLog(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false)
	waitState(t, s.m, StateInSync)
	fill(t, s.dev, 0, 4096, 3)
	deadline := time.Now().Add(10 * time.Second)
	for len(s.j.Ranges()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("dirty log still holds %v", s.j.Ranges())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A replica smaller than the volume is refused.
func TestSmallReplicaRefused(t *testing.T) {
	rep := newReplica(testSize / 2)
	m, err := New(Options{Volume: "v", Size: testSize, Policy: Degrade, Dial: rep.dial,
		Dirty: []blockdev.Range{{Off: 0, Len: testSize}}, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	m.Filter(memdev.New(testSize, false))
	waitState(t, m, StateRefused)
}

// A replica that stops answering (a cut link sends no reset) is dropped
// after the request timeout; with policy degrade the write then succeeds.
func TestUnansweredReplicaTimesOut(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false, func(o *Options) { o.Timeout = 50 * time.Millisecond })
	waitState(t, s.m, StateInSync)
	s.rep.hang.Store(true)
	fill(t, s.dev, 0, 4096, 5) // returns once the timeout dropped the replica
	if st := s.m.Status(); st.State != StateDegraded || st.Connected {
		t.Fatalf("after an unanswered write: state %s, connected %v", st.State, st.Connected)
	}
	s.rep.hang.Store(false)
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}
