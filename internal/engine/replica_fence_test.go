package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/netproxy"
	"github.com/extrasphere/extrasphere/internal/node"
	"github.com/extrasphere/extrasphere/internal/replication"
)

// fenceRig is a replica node (an engine with a node identity and a TLS
// NBD listener) reached through a fault proxy, and the identity of the
// source node paired with it. The source itself is a mirror.Mirror in the
// test: what it sends crosses the proxy, the NBD server and
// replication.Service.OpenStream as a paired node's would.
type fenceRig struct {
	e     *Engine
	proxy *netproxy.Proxy
	peer  node.Peer
	srcNS *node.Service
	dstFP string
}

func newNodeService(t *testing.T, name string) (*node.Service, *node.Identity) {
	t.Helper()
	ns, err := node.Open(filepath.Join(t.TempDir(), "node"), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ns.Init(name)
	if err != nil {
		t.Fatal(err)
	}
	return ns, id
}

// newFenceRig starts the replica node with replica volume "r" (generation
// "g1", size bytes) of volume "s" on the source node.
func newFenceRig(t *testing.T, size int64) *fenceRig {
	t.Helper()
	ctx := t.Context()
	srcNS, srcID := newNodeService(t, "src")
	dstNS, dstID := newNodeService(t, "dst")
	peer := node.Peer{Name: "src", Fingerprint: srcID.Fingerprint, CertPEM: srcID.CertPEM(), Added: time.Now()}
	if err := dstNS.Peers().Add(peer); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e, err := Open(ctx, Config{DataDir: dir, NBDSocket: filepath.Join(dir, "nbd.sock"), NBDAddr: "127.0.0.1:10809", Node: dstNS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.CreateReplica(ctx, peer, apischema.ReplicaRequest{Volume: "r", Size: size, SourceVolume: "s", Gen: "g1"}); err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(e, nbd.Options{TLS: dstNS.ServerTLS(), RequireTLS: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := netproxy.New(pln, ln.Addr().String(), netproxy.Options{})
	go px.Serve()
	t.Cleanup(func() { px.Close() })
	return &fenceRig{e: e, proxy: px, peer: peer, srcNS: srcNS, dstFP: dstID.Fingerprint}
}

// dialer dials the replica's stream through the proxy the way the source
// engine does (engine.dialer): a pool, with a new epoch per session.
func (r *fenceRig) dialer(t *testing.T) mirror.Dialer {
	cfg, err := r.srcNS.ClientTLS(r.dstFP)
	if err != nil {
		t.Fatal(err)
	}
	var epoch atomic.Uint64
	return func(ctx context.Context) (blockdev.Device, error) {
		tg := nbd.Target{Network: "tcp", Address: r.proxy.Addr().String(), Export: replication.StreamExport("r", "g1", epoch.Add(1)), TLS: true}
		return nbd.DialPool(ctx, tg, nbd.ClientOptions{TLS: cfg}, replication.PoolConns)
	}
}

// streams is the number of stream connections the replica counts.
func (r *fenceRig) streams(t *testing.T) int {
	ms, err := r.e.ListMirrors(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Role == apischema.RoleReplica {
			return m.Streams
		}
	}
	t.Fatalf("volume r is no replica: %+v", ms)
	return 0
}

// replicaBytes reads the replica volume.
func (r *fenceRig) replicaBytes(t *testing.T, off int64, n int) []byte {
	t.Helper()
	return readThrough(t, r.e, "r", n, off)
}

func waitMirrorState(t *testing.T, m *mirror.Mirror, want mirror.State) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a watchdog, not a timing threshold
	for {
		s := m.Status()
		if s.State == want && s.Connected {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror is %s (connected %v), want %s (last error %q)", s.State, s.Connected, want, s.LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplicaFenceHeldWrite is the link-cut divergence of issue 9, made
// deterministic: a write of the source's connection is held in the
// network; the source gives the connection up (its request timed out),
// reconnects and resyncs the region; the guest then writes the region
// anew. Only then is the held write delivered to the replica. Without the
// fence the replica applied it (the old connection was still open there)
// and held the older data; with it, the old connection was ended before
// the new one's handshake completed, and the late bytes find it closed.
func TestReplicaFenceHeldWrite(t *testing.T) {
	ctx := t.Context()
	const size = 4 << 20
	r := newFenceRig(t, size)
	local := memdev.New(size, false)
	m, err := mirror.New(mirror.Options{Volume: "s", Size: size, Policy: mirror.Degrade, Dial: r.dialer(t), Synced: true,
		Timeout: time.Second, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	dev := m.Filter(local)
	waitMirrorState(t, m, mirror.StateInSync)

	const off = 1 << 20
	old := bytes.Repeat([]byte{0xa1}, 64<<10)
	fresh := bytes.Repeat([]byte{0xb2}, 64<<10)
	held := r.proxy.Hold()
	if held.Conns() == 0 {
		t.Fatal("no mirror connection to hold")
	}
	// The replica never answers: the request times out, the mirror
	// degrades (the write is acknowledged locally), drops the connection,
	// reconnects and resyncs the chunk.
	if err := dev.WriteAt(ctx, old, off, 0); err != nil {
		t.Fatalf("write while the link holds it: %v", err)
	}
	waitMirrorState(t, m, mirror.StateInSync)
	if err := dev.WriteAt(ctx, fresh, off, 0); err != nil {
		t.Fatal(err)
	}
	if s := m.Status(); s.State != mirror.StateInSync {
		t.Fatalf("after the second write: %s (%s)", s.State, s.LastError)
	}
	// The old connection's bytes arrive now.
	held.Release()
	// Once the replica counts only the new session's connections, the
	// old ones ended there, after applying anything they received.
	live := r.proxy.Conns()
	deadline := time.Now().Add(time.Minute) // watchdog
	for r.streams(t) != live {
		if time.Now().After(deadline) {
			t.Fatalf("the replica counts %d stream connections, the proxy %d open", r.streams(t), live)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.replicaBytes(t, off, len(fresh)); !bytes.Equal(got, fresh) {
		t.Fatalf("the replica holds %#x at %d after in-sync, the source %#x: the held write of the old connection landed after the resync", got[0], off, fresh[0])
	}
	want := make([]byte, size)
	if err := local.ReadAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if got := r.replicaBytes(t, 0, size); !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("the replica differs from the source at %d: %#x, want %#x", i, got[i], want[i])
	}
}

// TestReplicaStreamEpochs: a stream without an epoch is refused for good
// (the source must be upgraded); an older epoch than the replica follows
// is refused retryably; a newer one ends the older stream's connection.
func TestReplicaStreamEpochs(t *testing.T) {
	ctx := t.Context()
	r := newFenceRig(t, 1<<20)
	cfg, err := r.srcNS.ClientTLS(r.dstFP)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(export string) (*nbd.Client, error) {
		return nbd.Dial(ctx, nbd.Target{Network: "tcp", Address: r.proxy.Addr().String(), Export: export, TLS: true}, nbd.ClientOptions{TLS: cfg})
	}
	var re *nbd.ReplyError
	if _, err := dial("r@g1"); !errors.As(err, &re) || !errors.Is(err, nbd.ErrNotPermitted) || !bytes.Contains([]byte(re.Msg), []byte("epoch")) {
		t.Fatalf("a stream without an epoch: %v, want a final refusal (NBD_REP_ERR_POLICY) naming the epoch", err)
	}
	c5, err := dial(replication.StreamExport("r", "g1", 5))
	if err != nil {
		t.Fatal(err)
	}
	defer c5.Close()
	if err := c5.WriteAt(ctx, []byte{1}, 0, 0); err != nil {
		t.Fatal(err)
	}
	c7, err := dial(replication.StreamExport("r", "g1", 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c7.Close()
	// The replica ended epoch 5's connection before 7's handshake
	// completed: its next request fails.
	if err := c5.WriteAt(ctx, []byte{2}, 0, 0); err == nil {
		t.Fatal("a write of the fenced stream succeeded")
	}
	if _, err := dial(replication.StreamExport("r", "g1", 6)); !errors.As(err, &re) || errors.Is(err, nbd.ErrNotPermitted) || !errors.Is(err, nbd.ErrUnknownExport) ||
		!bytes.Contains([]byte(re.Msg), []byte("older")) {
		t.Fatalf("an older epoch: %v, want a retryable refusal naming the stale epoch", err)
	}
	if got := r.replicaBytes(t, 0, 1); got[0] != 1 {
		t.Fatalf("the replica holds %d, want 1 (the fenced write must not land)", got[0])
	}
}
