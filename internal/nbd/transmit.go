package nbd

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// transmission is the request/reply phase of one connection.
type transmission struct {
	c    *conn
	dev  blockdev.Device
	sess session
	meta []metaSel

	replies    chan *reply
	budget     *semaphore.Weighted // this connection's share (budget.go)
	budgetSize int64
	workers    sync.WaitGroup
	bufs       *bufPool

	// idle hands a request to a worker waiting for one (dispatch);
	// closed by run when the reader has returned, which ends the idle
	// workers.
	idle chan work

	// active counts the requests being run: by workers, or in line by
	// the reader (lead).
	active atomic.Int32

	// readEnd carries how reading ended from the last reader to run.
	readEnd chan error

	// The in-line request (lead): inl is its number while it runs, 0
	// otherwise; gen numbers them. watch ticks while requests run in line
	// (watching), and takes over from one that ran a whole tick (seen).
	inl      atomic.Uint64
	gen      atomic.Uint64
	watch    *time.Timer
	watching atomic.Bool
	seen     atomic.Uint64 // inl at the last tick
	calm     atomic.Int32  // ticks in a row without a request in line
	ended    atomic.Bool   // run is returning: the watch stops

	inlSelf atomic.Bool     // the request run in line writes its own reply (send)
	unixRC  syscall.RawConn // the unix socket, for caughtUp; nil over TCP

	// wmu serialises the socket's reply writes: the writer's, and a lone
	// worker's own (send). It guards c.bw, dw and werr.
	wmu  sync.Mutex
	dw   deadlineWriter
	werr error // the first failed reply write; nothing is written after it
}

// work is one admitted request for a worker.
type work struct {
	req     request
	payload []byte
	tk      ticket
}

func newTransmission(c *conn, n *negotiated) *transmission {
	caps := n.exp.Device.Caps()
	return &transmission{
		c:   c,
		dev: n.exp.Device,
		sess: session{
			size:       uint64(n.exp.Device.Size()),
			readOnly:   n.exp.ReadOnly || caps.ReadOnly,
			structured: n.structured,
			minBlock:   max(caps.MinBlock, 1),
			maxPayload: payloadLimit(caps),
			haveMeta:   len(n.meta) > 0,
		},
		meta:       n.meta,
		replies:    make(chan *reply, 256),
		budget:     semaphore.NewWeighted(c.srv.opts.InflightBytes),
		budgetSize: c.srv.opts.InflightBytes,
		bufs:       c.srv.bufs,
		idle:       make(chan work),
		readEnd:    make(chan error, 1),
		unixRC:     unixRawConn(c.nc),
	}
}

// unixRawConn is nc's socket if nc is a unix socket, or nil.
func unixRawConn(nc net.Conn) syscall.RawConn {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// caughtUp reports whether the client has read every reply sent to it: a
// client at queue depth 1 always has, as it waits for each reply before
// it sends the next request. On a unix socket the bytes we sent stay
// charged to our send queue (SIOCOUTQ) until the client has read them.
// Over TCP the send queue empties when the peer's kernel acknowledges the
// data, whether or not the client read it, so it cannot tell: false.
func (t *transmission) caughtUp() bool {
	if t.unixRC == nil {
		return false
	}
	q := -1
	t.unixRC.Control(func(fd uintptr) {
		if n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			q = n
		}
	})
	return q == 0
}

// minWeight is the budget a request without payload takes, so the budget
// also bounds the number of requests in flight.
const minWeight = 256 << 10

func (t *transmission) run() {
	to := t.c.srv.opts.WriteTimeout
	t.dw = deadlineWriter{nc: t.c.nc, timeout: to, renewEvery: min(deadlineRenew, to/4)}
	t.c.bw.Reset(&t.dw)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); t.writer() }()
	t.watch = time.AfterFunc(time.Hour, t.tick)
	t.watch.Stop()
	t.workers.Add(1)
	go t.lead()
	err := <-t.readEnd
	switch {
	case err == nil || t.c.isStopped():
		// NBD_CMD_DISC or Shutdown: every request already read is
		// finished and answered before the connection closes.
	default:
		// The client went away (or broke the stream) without NBD_CMD_DISC:
		// nobody waits for the answers, so stop the work in flight.
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.c.log.Info("nbd connection ended", "err", err)
		}
		t.c.drop()
	}
	close(t.idle) // no more work: idle workers return
	t.workers.Wait()
	t.ended.Store(true)
	t.watch.Stop()
	close(t.replies)
	<-writerDone
}

// lead holds the reader role: it reads requests and admits work until the
// stream ends, then tells run how (nil on NBD_CMD_DISC). Exactly one
// goroutine holds the role at a time.
//
// A small request that finds nothing else in flight and nothing pipelined
// behind it is run right here, and at queue depth 1 (and for FLUSH and FUA) its
// reply is written here too (send): no goroutine hand-off on its way, which on this
// path cost more than the device (bench/RESULTS.md, QD1 write+FLUSH). Should it
// run for a whole watchTick, tick gives the reader role to a new
// goroutine, so that a disconnect is still seen (and cancels the request)
// and pipelined requests are still read; this one then ends with its
// request.
func (t *transmission) lead() {
	defer t.workers.Done()
	for {
		w, more, err := t.next()
		if err != nil || !more {
			t.readEnd <- err
			return
		}
		if t.active.Load() != 0 || t.c.br.Buffered() != 0 || w.req.length > maxInline {
			t.dispatch(w.req, w.payload, w.tk)
			continue
		}
		if !t.inline(w) {
			return
		}
	}
}

// maxInline is the largest request run in line. A hand-off costs some
// microseconds, which matter to a 4 KiB request and not to a larger one;
// and a large request run in line keeps the reader from the next one (over
// TLS, decrypting it), where a worker would overlap the two.
const maxInline = 64 << 10

// watchTick is the period of the watch over requests run in line: one
// that is still running at two ticks in a row (so after one to two
// ticks) hands the reader role on. A timer armed per request would cost
// more than the request: arming it wakes a thread to poll timers.
const watchTick = time.Millisecond

// watchCalm is how many ticks without a request in line stop the watch
// (the next request run in line starts it again).
const watchCalm = 64

// inline runs w on the reader's goroutine and reports whether this
// goroutine still holds the reader role afterwards.
func (t *transmission) inline(w work) bool {
	g := t.gen.Add(1)
	t.active.Add(1)
	t.inlSelf.Store(w.req.typ == cmdFlush || w.req.flags&cmdFlagFUA != 0 || t.caughtUp())
	t.inl.Store(g)
	if t.watching.CompareAndSwap(false, true) {
		t.calm.Store(0)
		t.watch.Reset(watchTick)
	}
	if !t.handle(w.req, w.payload, w.tk) {
		t.release(w.tk)
	}
	t.active.Add(-1)
	// Taken over: a new goroutine reads now, and this one ends with its
	// request.
	return t.inl.CompareAndSwap(g, 0)
}

// tick, the watch, makes its goroutine the reader if the request run in
// line is the one it saw at the last tick; otherwise it ticks again, or
// stops after watchCalm ticks with nothing in line.
//
// inline publishes inl before it tries to start the watch, and tick
// clears watching before it looks at inl a last time: a request that
// starts while the watch stops is seen by one of the two.
func (t *transmission) tick() {
	if t.ended.Load() {
		return
	}
	g := t.inl.Load()
	if g != 0 && t.seen.Swap(g) == g {
		if t.inl.CompareAndSwap(g, 0) {
			t.seen.Store(0)
			t.calm.Store(0)
			t.watch.Reset(watchTick) // for the requests the new reader runs in line
			t.workers.Add(1)         // the old reader is still in the group: run is not waiting yet
			t.lead()
		} else {
			t.watch.Reset(watchTick)
		}
		return
	}
	if g != 0 {
		t.calm.Store(0)
	} else if t.calm.Add(1) >= watchCalm {
		t.watching.Store(false)
		if t.inl.Load() == 0 || !t.watching.CompareAndSwap(false, true) {
			return
		}
		t.calm.Store(0)
	}
	t.watch.Reset(watchTick)
}

// next reads the next valid request, its payload and its budget; requests
// that fail validation are answered here. It returns more == false, with
// nil, on NBD_CMD_DISC, or an error on disconnect, a broken stream, or
// Shutdown.
func (t *transmission) next() (w work, more bool, err error) {
	var hb [requestSize]byte
	for {
		if _, err := io.ReadFull(t.c.br, hb[:]); err != nil {
			return w, false, err
		}
		req, err := decodeRequest(hb[:])
		if err != nil {
			return w, false, err // out of step: the protocol has no resync
		}
		if req.typ == cmdDisc {
			return w, false, nil
		}
		errno := validateRequest(req, t.sess)
		if errno != 0 {
			if req.typ == cmdWrite {
				// The payload must still be consumed to stay in step; it
				// is skipped, never stored.
				if _, err := t.c.br.Discard(int(req.length)); err != nil {
					return w, false, err
				}
			}
			t.sendError(req, errno, "")
			continue
		}
		tk := t.ticketFor(req)
		if err := t.acquire(tk); err != nil {
			return w, false, err
		}
		var buf []byte
		if req.typ == cmdWrite {
			buf = t.bufs.get(int(req.length))
			if err := t.readPayload(buf); err != nil {
				t.bufs.put(buf)
				t.release(tk)
				return w, false, err
			}
		}
		return work{req: req, payload: buf, tk: tk}, true, nil
	}
}

// readPayload reads a WRITE's payload into buf (which holds budget). A
// payload the reader has in hand costs nothing more; one still on its way
// must make progress, writeChunk at a time, within PayloadTimeout, or the
// client is dropped: a client cannot pin its budget share by never
// finishing a WRITE.
func (t *transmission) readPayload(buf []byte) error {
	br := t.c.br
	if br.Buffered() >= len(buf) {
		_, err := io.ReadFull(br, buf)
		return err
	}
	defer t.c.setReadDeadline(time.Time{})
	for len(buf) > 0 {
		if err := t.c.setReadDeadline(time.Now().Add(t.c.srv.opts.PayloadTimeout)); err != nil {
			return err
		}
		k := min(len(buf), writeChunk)
		if _, err := io.ReadFull(br, buf[:k]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !t.c.isStopped() {
				t.c.log.Warn("nbd client stopped sending a WRITE payload: dropping the connection",
					"payload_timeout", t.c.srv.opts.PayloadTimeout)
			}
			return err
		}
		buf = buf[k:]
	}
	return nil
}

// dispatch hands a request to an idle worker, or starts one when none is
// waiting. Workers stay for the connection's life, so a request costs a
// channel handoff instead of a new goroutine whose stack grows again
// through the device stack (measured: newproc and stack copies were about
// a tenth of the daemon's CPU under 4 KiB random writes). Their number is
// the connection's peak concurrency, which the budget bounds. The worker
// gives tk back when it is done, unless it handed tk to a queued reply
// (READ data), which gives it back once the reply left.
func (t *transmission) dispatch(req request, payload []byte, tk ticket) {
	w := work{req: req, payload: payload, tk: tk}
	t.active.Add(1)
	select {
	case t.idle <- w:
	default:
		t.workers.Add(1)
		go t.worker(w)
	}
}

// worker runs w, then whatever dispatch hands it, until run closes idle.
func (t *transmission) worker(w work) {
	defer t.workers.Done()
	for ok := true; ok; w, ok = <-t.idle {
		if !t.handle(w.req, w.payload, w.tk) {
			t.release(w.tk)
		}
		t.active.Add(-1)
	}
}
