package nbd

import (
	"context"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// watchdog bounds every wait for an event in these tests: reaching it is a
// failure (a hang), not a slow machine.
const watchdog = 20 * time.Second

// waitFor polls cond until it holds, failing the test after watchdog.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(watchdog)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", watchdog, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingDev counts ReadAt calls; when block is set, ReadAt waits until
// its ctx ends or release is closed, and records a cancelled ctx.
type countingDev struct {
	*memdev.Device
	reads     atomic.Int64
	block     bool
	release   chan struct{}
	cancelled atomic.Int64
}

func (d *countingDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.reads.Add(1)
	if d.block {
		select {
		case <-ctx.Done():
			d.cancelled.Add(1)
			return ctx.Err()
		case <-d.release:
		}
	}
	return d.Device.ReadAt(ctx, p, off)
}

// startLimited runs a server with opts on a unix socket with one export
// "disk" backed by dev.
func startLimited(t *testing.T, dev blockdev.Device, opts Options) (*Server, *testServer) {
	t.Helper()
	exp := &testExports{devs: map[string]*Export{"disk": {Name: "disk", Device: dev}}}
	srv := NewServer(exp, opts)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), watchdog)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, &testServer{srv: srv, sock: sock}
}

// A client that sends READs and never reads the replies holds at most its
// connection's share of the budget: its reader stops admitting requests,
// another client keeps working, and after WriteTimeout it is dropped and
// everything it held goes back.
func TestSlowReaderStallsThenDropped(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false)}
	srv, s := startLimited(t, dev, Options{MemoryBytes: MinMemoryBytes, WriteTimeout: time.Second})
	const reqLen = 4 << 20
	share := srv.opts.InflightBytes / reqLen

	slow := dialRaw(t, s)
	slow.Open("disk", false)
	for i := range 20 {
		slow.Request(cmdRead, 0, uint64(i), uint64(i)*reqLen, reqLen, nil)
	}
	waitFor(t, "the slow client's share of reads", func() bool { return dev.reads.Load() == share })
	if got, limit := srv.MemoryInUse(), srv.opts.InflightBytes; got > limit {
		t.Fatalf("the slow client holds %d bytes, more than its share %d", got, limit)
	}

	ok := dialRaw(t, s)
	ok.Open("disk", false)
	ok.RoundTrip(0, [4]byte{1, 2, 3, 4})

	waitFor(t, "the slow client to be dropped", func() bool { return srv.Connections("disk") == 1 })
	if got := dev.reads.Load(); got != share+1 { // +1: the good client's read
		t.Fatalf("%d reads ran, want the slow client's share %d and one more", got, share)
	}
	ok.RoundTrip(8, [4]byte{5, 6, 7, 8})
	ok.Request(cmdDisc, 0, 9, 0, 0, nil)
	waitFor(t, "the budget to be given back", func() bool { return srv.MemoryInUse() == 0 })
}

// The global budget holds across connections: slow clients together never
// hold more than MemoryBytes, and all of it comes back when they are gone.
func TestGlobalBudgetAcrossSlowClients(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false)}
	srv, s := startLimited(t, dev, Options{MemoryBytes: MinMemoryBytes, InflightBytes: MinMemoryBytes, WriteTimeout: time.Second})
	const reqLen = 4 << 20
	for range 3 {
		c := dialRaw(t, s)
		c.Open("disk", false)
		for i := range 20 {
			c.Request(cmdRead, 0, uint64(i), uint64(i)*reqLen, reqLen, nil)
		}
	}
	waitFor(t, "the budget to fill", func() bool { return dev.reads.Load() >= MinMemoryBytes/reqLen })
	if got := srv.MemoryInUse(); got > MinMemoryBytes {
		t.Fatalf("slow clients hold %d bytes, over the budget of %d", got, MinMemoryBytes)
	}
	waitFor(t, "every slow client to be dropped", func() bool { return srv.Connections("disk") == 0 })
	waitFor(t, "the budget to be given back", func() bool { return srv.MemoryInUse() == 0 })
}

// A disconnect without NBD_CMD_DISC cancels the requests in flight.
func TestDisconnectCancelsInflight(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false), block: true, release: make(chan struct{})}
	srv, s := startLimited(t, dev, Options{})
	c := dialRaw(t, s)
	c.Open("disk", false)
	c.Request(cmdRead, 0, 1, 0, 4096, nil)
	c.Request(cmdRead, 0, 2, 4096, 4096, nil)
	waitFor(t, "both reads to start", func() bool { return dev.reads.Load() == 2 })
	c.NC.Close()
	waitCancelled(t, srv, 2, dev.cancelled.Load)
}

// waitCancelled waits, after a disconnect, for want requests to be
// cancelled and the connection to end, then checks the budget came back.
func waitCancelled(t *testing.T, srv *Server, want int64, cancelled func() int64) {
	t.Helper()
	waitFor(t, "the requests to be cancelled", func() bool { return cancelled() == want })
	waitFor(t, "the connection to end", func() bool { return srv.Connections("disk") == 0 })
	if n := srv.MemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of budget held after the disconnect", n)
	}
}

// NBD_CMD_DISC is a soft disconnect: requests in flight finish and are
// answered, their ctx is not cancelled.
func TestDiscFinishesInflight(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false), block: true, release: make(chan struct{})}
	_, s := startLimited(t, dev, Options{})
	c := dialRaw(t, s)
	c.Open("disk", false)
	c.Request(cmdRead, 0, 7, 0, 4096, nil)
	waitFor(t, "the read to start", func() bool { return dev.reads.Load() == 1 })
	c.Request(cmdDisc, 0, 8, 0, 0, nil)
	close(dev.release)
	if h, e := c.SimpleReply(); h != 7 || e != 0 {
		t.Fatalf("reply handle %d errno %d, want 7 and 0", h, e)
	}
	c.Read(make([]byte, 4096))
	if !c.ClosedSilently() {
		t.Fatal("the server kept the connection after NBD_CMD_DISC")
	}
	if n := dev.cancelled.Load(); n != 0 {
		t.Fatalf("%d reads cancelled by a soft disconnect", n)
	}
}

func TestTicketFor(t *testing.T) {
	srv := NewServer(&testExports{}, Options{MemoryBytes: 256 << 20})
	tr := &transmission{c: &conn{srv: srv}, budgetSize: srv.opts.InflightBytes, meta: []metaSel{{id: 1}}}
	cases := []struct {
		name       string
		req        request
		conn, glob int64
	}{
		{"Read4K", request{typ: cmdRead, length: 4096}, minWeight, requestOverhead},
		{"Read5M", request{typ: cmdRead, length: 5 << 20}, 8 << 20, 8 << 20},
		{"WriteMax", request{typ: cmdWrite, length: MaxPayload}, MaxPayload, MaxPayload},
		{"CacheHuge", request{typ: cmdCache, length: 1 << 31}, cacheStep, cacheStep},
		{"CacheSmall", request{typ: cmdCache, length: 1 << 20}, 1 << 20, 1 << 20},
		{"Flush", request{typ: cmdFlush}, minWeight, requestOverhead},
		{"BlockStatus", request{typ: cmdBlockStatus, length: 1 << 30}, minWeight, 4 + 8*maxStatusExtents},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tr.ticketFor(tc.req)
			if want := (ticket{conn: tc.conn, global: tc.glob}); got != want {
				t.Fatalf("ticket %+v, want %+v", got, want)
			}
		})
	}
}

// Shutdown ends even when a reader waits for budget that a stalled client
// holds: the wait is cancelled, and the stalled client is dropped after
// the write deadline like any other.
func TestShutdownWithStalledClient(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false)}
	srv, s := startLimited(t, dev, Options{MemoryBytes: MinMemoryBytes, WriteTimeout: time.Second})
	const reqLen = 4 << 20
	slow := dialRaw(t, s)
	slow.Open("disk", false)
	for i := range 20 {
		slow.Request(cmdRead, 0, uint64(i), 0, reqLen, nil)
	}
	share := srv.opts.InflightBytes / reqLen
	waitFor(t, "the slow client's share of reads", func() bool { return dev.reads.Load() == share })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stalled client: %v", err)
	}
	if n := srv.MemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of budget held after shutdown", n)
	}
}

// A client that starts a WRITE and never finishes its payload holds the
// payload's budget only until PayloadTimeout: then it is dropped.
func TestStalledWritePayloadDropped(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false)}
	srv, s := startLimited(t, dev, Options{PayloadTimeout: time.Second})
	c := dialRaw(t, s)
	c.Open("disk", false)
	c.Request(cmdWrite, 0, 1, 0, 4<<20, make([]byte, 1000))
	waitFor(t, "the payload's budget to be taken", func() bool { return srv.MemoryInUse() > 0 })
	if !closedBeforeWatchdog(c) {
		t.Fatal("the client with an unfinished WRITE was kept")
	}
	waitFor(t, "the budget to be given back", func() bool { return srv.MemoryInUse() == 0 })
}

// Shutdown stops a reader that waits for a WRITE payload: its read
// deadline is not undone by the payload's own.
func TestShutdownDuringWritePayload(t *testing.T) {
	dev := &countingDev{Device: memdev.New(64<<20, false)}
	srv, s := startLimited(t, dev, Options{})
	c := dialRaw(t, s)
	c.Open("disk", false)
	c.Request(cmdWrite, 0, 1, 0, 4<<20, make([]byte, 1000))
	waitFor(t, "the payload's budget to be taken", func() bool { return srv.MemoryInUse() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a WRITE payload on its way: %v", err)
	}
	if n := srv.MemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of budget held after shutdown", n)
	}
}
