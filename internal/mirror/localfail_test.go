package mirror

import (
	"context"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// ctxLocal fails a write whose ctx has ended before it starts, as the flat
// device does: what the NBD server's cancelled requests meet (a client
// that disconnected with writes in flight).
type ctxLocal struct{ *memdev.Device }

func (d ctxLocal) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.Device.WriteAt(ctx, p, off, f)
}

// A write that failed locally while the replica took it (the replica's
// request does not share the caller's cancellation) leaves the two sides
// different: the mirror must not go on saying in-sync without copying
// those chunks again.
func TestLocalFailureAfterReplicaWrite(t *testing.T) {
	s := newSetup(t, testSize, Degrade, false)
	waitState(t, s.m, StateInSync)
	dev := s.m.Filter(ctxLocal{s.local})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := make([]byte, 4096)
	for i := range p {
		p[i] = 0x5A
	}
	if err := dev.WriteAt(ctx, p, 8192, 0); err == nil {
		t.Fatal("a write with a cancelled ctx succeeded locally")
	}
	waitState(t, s.m, StateInSync)
	sameContent(t, s.local, s.rep.dev)
}
