//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/netproxy"
)

// Replica fencing (issue 9, A): a write of an abandoned mirror connection, still travelling when
// the source reconnects and resyncs, never lands on the replica afterwards. The source reaches the
// target daemon (in a network namespace) only through fault proxies in this process, one in front
// of its node port and one in front of its NBD port, so a test can hold the bytes of the mirror's
// connection, cut it, or pull the link under it.

// fenceRig is a source daemon mirroring to a target daemon in a network namespace through proxies.
// The soak (bench/soak.sh) reuses it through mirrorCut and mirrorIdentical.
type fenceRig struct {
	src, dst  *daemon
	link      *netLink
	nodeProxy *netproxy.Proxy
	nbdProxy  *netproxy.Proxy
}

// newFenceRig starts both daemons and the proxies, and pairs the source with the target through
// the node proxy. The proxies listen on the link's host address with the target's own port
// numbers: the peer API tells the source the target's NBD port, and the source joins it to the
// host of the target URL.
func newFenceRig(t *testing.T) *fenceRig {
	t.Helper()
	link := newNetLink(t)
	src := startDaemonOpts(t, daemonOpts{Node: true, Name: "src"})
	dst := startDaemonOpts(t, daemonOpts{Node: true, Name: "dst", Host: link.NSIP, NetNS: link.NS})
	r := &fenceRig{src: src, dst: dst, link: link,
		nodeProxy: mfProxy(t, net.JoinHostPort(link.HostIP, strconv.Itoa(dst.nodePort)), dst.nodeAddr(), 0),
		nbdProxy:  mfProxy(t, net.JoinHostPort(link.HostIP, strconv.Itoa(dst.port)), dst.tcpAddr(), 0)}
	mfPairAt(t, src, dst, r.nodeProxy.Addr().String())
	return r
}

// mirror creates vol (size) on the source and its sync mirror (policy degrade) through the
// proxies, and waits until it is in sync.
func (r *fenceRig) mirror(t *testing.T, vol, size string) {
	t.Helper()
	r.src.CreateVolume(vol, size)
	r.src.CLI("mirror", "create", vol, "--to", "extrasphere://"+r.nodeProxy.Addr().String()+"/"+vol, "--mode", "sync", "--on-failure", "degrade")
	mirrorWait(t, r.src, vol, "in-sync")
}

// replicaStreams is the number of stream connections the target counts on its replica vol.
func replicaStreams(t *testing.T, d *daemon, vol string) int {
	t.Helper()
	var ms []struct {
		Role    string `json:"role"`
		Streams int    `json:"streams"`
	}
	if err := json.Unmarshal([]byte(d.CLI("mirror", "status", vol, "--json")), &ms); err != nil {
		t.Fatalf("mirror status --json: %v", err)
	}
	for _, m := range ms {
		if m.Role == "replica" {
			return m.Streams
		}
	}
	t.Fatalf("volume %s on %s is not a replica: %+v", vol, d.dir, ms)
	return 0
}

// waitOldStreamsGone waits until the target counts only the stream connections open through the
// NBD proxy: every older connection has ended there, after applying whatever it had received.
// A watchdog bound, not a timing threshold.
func (r *fenceRig) waitOldStreamsGone(t *testing.T, vol string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, live := replicaStreams(t, r.dst, vol), r.nbdProxy.Conns()
		if got == live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s counts %d stream connections, %d are open through the proxy", vol, got, live)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mirrorIdentical fails unless qemu-img compare finds the source and replica flats of vol
// identical. Call it with no writer on the source and the mirror in sync: both daemons keep
// running (the flats are read through the page cache, which holds every completed write).
func (r *fenceRig) mirrorIdentical(t *testing.T, vol string) {
	t.Helper()
	r.waitOldStreamsGone(t, vol)
	sameImages(t, flatOf(r.src, vol), flatOf(r.dst, vol))
}

// cutKind is one way to break the mirror's connection.
type cutKind string

const (
	// cutLink pulls the link under the proxies (no RST or FIN); the mirror notices by its
	// request timeout, and the kernel of the source retransmits after the link is back.
	cutLink cutKind = "link"
	// cutReset closes every proxied connection (the peers see EOF or a reset) and refuses new
	// ones for a while.
	cutReset cutKind = "reset"
	// cutHold holds the bytes of the mirror's connection (the source times out and reconnects
	// past it), and delivers them late, after the resync.
	cutHold cutKind = "hold"
)

// mirrorCut breaks vol's mirror connection one way, waits for the mirror to notice, restores the
// path and waits until it is in sync again. A link or reset cut keeps the mirror degraded until
// the path is restored; a hold does not (the mirror's next connection is not held), so there the
// sign is the resync: the copier sends again what the held writes touched. The held bytes are
// delivered once the mirror is back in sync.
func (r *fenceRig) mirrorCut(t *testing.T, vol string, kind cutKind) []string {
	t.Helper()
	copied := mirrorOf(t, r.src, vol).BytesCopied
	switch kind {
	case cutLink:
		r.link.Down()
		mirrorWait(t, r.src, vol, "degraded")
		r.link.Up()
	case cutReset:
		r.nbdProxy.Cut()
		mirrorWait(t, r.src, vol, "degraded")
		r.nbdProxy.Restore()
	case cutHold:
		held := r.nbdProxy.Hold()
		defer held.Release()
		deadline := time.Now().Add(2 * time.Minute) // a watchdog
		for mirrorOf(t, r.src, vol).BytesCopied == copied {
			if time.Now().After(deadline) {
				t.Fatalf("hold: the mirror of %s resent nothing", vol)
			}
			time.Sleep(50 * time.Millisecond)
		}
	default:
		t.Fatalf("unknown cut %q", kind)
	}
	seen, _ := mfWaitStates(t, r.src, vol, "in-sync")
	return seen
}

// TestMirrorHeldWrite: the deterministic regression test of the link-cut divergence. A guest write
// reaches the source while the proxy holds the mirror's connection: the replica never answers, the
// mirror times out, degrades, drops the connection and resyncs the region over a new one; then
// the guest writes the region anew, in sync. Only then are the held bytes of the old connection
// delivered to the target. The target had ended that connection before the new one's handshake
// completed, so they are refused: the replica holds the second write, and qemu-img compare finds
// both sides identical.
func TestMirrorHeldWrite(t *testing.T) {
	r := newFenceRig(t)
	r.mirror(t, "hw", "64M")
	uri := r.src.UnixURI("hw")
	qemuIO(t, uri, "write -P 0x11 0 4M", "flush")

	held := r.nbdProxy.Hold()
	if held.Conns() == 0 {
		t.Fatal("no mirror connection through the NBD proxy to hold")
	}
	// Returns after the mirror's request timeout: policy degrade acknowledges it locally.
	qemuIO(t, uri, "write -P 0xa1 1M 64k")
	seen, _ := mfWaitStates(t, r.src, "hw", "in-sync")
	t.Logf("write held: mirror states %v", seen)
	qemuIO(t, uri, "write -P 0xb2 1M 64k", "flush")
	if m := mirrorOf(t, r.src, "hw"); m.State != "in-sync" {
		t.Fatalf("after the second write the mirror is %s (%s)", m.State, m.LastError)
	}
	held.Release() // the old connection's bytes arrive now
	r.waitOldStreamsGone(t, "hw")
	if got := mtReadAt(t, flatOf(r.dst, "hw"), 1<<20, 64<<10); !mtAll(got, 0xb2) {
		t.Fatalf("the replica holds %#x at 1 MiB, the source 0xb2: the held write of the old connection landed after the resync", got[0])
	}
	r.src.Stop()
	r.dst.Stop()
	sameImages(t, flatOf(r.src, "hw"), flatOf(r.dst, "hw"))
}

// TestMirrorLinkCuts: a few cuts of the mirror's path at different moments, of the three kinds,
// under verifying fio. After each the mirror is back in sync, fio passed, and qemu-img compare
// finds source and replica identical. (bench/soak.sh runs many more.)
func TestMirrorLinkCuts(t *testing.T) {
	r := newFenceRig(t)
	r.mirror(t, "lk", "96M")
	uri := r.src.UnixURI("lk")
	cuts := []struct {
		kind  cutKind
		after time.Duration // placement only: how long fio writes before the cut
	}{
		{cutHold, 300 * time.Millisecond},
		{cutLink, 1200 * time.Millisecond},
		{cutReset, 0},
		{cutHold, 2 * time.Second},
	}
	for i, c := range cuts {
		what := fmt.Sprintf("cut %d (%s after %v)", i+1, c.kind, c.after)
		loop := startMigFioLoop(t, uri, "24m")
		waitConnected(t, r.src, "lk")
		time.Sleep(c.after) // placement only
		seen := r.mirrorCut(t, "lk", c.kind)
		t.Logf("%s: states %v", what, seen)
		loop.check(t, what)
		mirrorWait(t, r.src, "lk", "in-sync")
		r.mirrorIdentical(t, "lk")
	}
}
