package nbd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// conn is one client connection: negotiation, then transmission.
type conn struct {
	srv *Server
	log *slog.Logger

	// nc, br and bw change once, at STARTTLS, before transmission starts.
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	fixed    bool // client speaks fixed newstyle
	noZeroes bool // client set NBD_FLAG_C_NO_ZEROES

	// optBytes and optBiggest: the option data buffers negotiation
	// allocated, in total and the largest (the fuzz target checks them).
	optBytes, optBiggest int64

	// ctx is passed to Exports and the device; it is cancelled only when
	// the connection is torn down, never while requests drain on Shutdown.
	// STARTTLS replaces it, before transmission, with a child carrying the
	// peer's TLS state (PeerTLS); cancel still ends both.
	ctx    context.Context
	cancel context.CancelFunc

	// readCtx ends the reader's budget waits: a child of the first ctx (so
	// cancel ends it too) that stopReading also cancels, while requests
	// already admitted keep their ctx and drain.
	readCtx    context.Context
	readCancel context.CancelFunc

	mu      sync.Mutex // guards stopped, and orders the read deadline with it
	stopped bool       // Shutdown asked the reader to stop
}

// Socket buffer sizes. Negotiation reads each option's data into a buffer
// of its own (bounded by optionDataLimit), so its buffers only batch the
// small headers: a thousand clients in negotiation cost little. The
// transmission buffers batch pipelined requests and replies into few
// syscalls; payloads of their size or more bypass them.
const (
	handshakeBufSize    = 4 << 10
	transmissionBufSize = 64 << 10
)

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	readCtx, readCancel := context.WithCancel(ctx)
	return &conn{
		srv:        s,
		log:        s.log.With("remote", nc.RemoteAddr().String()),
		nc:         nc,
		br:         bufio.NewReaderSize(nc, handshakeBufSize),
		bw:         bufio.NewWriterSize(nc, handshakeBufSize),
		ctx:        ctx,
		cancel:     cancel,
		readCtx:    readCtx,
		readCancel: readCancel,
	}
}

// stopReading makes the reader return at its next read or budget wait
// (Shutdown).
func (c *conn) stopReading() {
	c.mu.Lock()
	c.stopped = true
	c.nc.SetReadDeadline(time.Now())
	c.mu.Unlock()
	c.readCancel()
}

// setReadDeadline sets the read deadline unless Shutdown stopped the
// reader, whose deadline (now) it must not undo.
func (c *conn) setReadDeadline(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		d = time.Now()
	}
	return c.nc.SetReadDeadline(d)
}

// drop ends a connection whose client is gone or stalled: its requests in
// flight are cancelled and nothing more is written to it.
func (c *conn) drop() {
	c.cancel()
	c.nc.Close()
}

func (c *conn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// serve runs the connection to its end and releases everything it holds.
func (c *conn) serve() {
	defer c.cancel()
	defer c.nc.Close()
	c.setHandshakeDeadline()
	n, err := c.negotiate()
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, errEndSession) && !c.isStopped() {
			c.log.Info("nbd negotiation ended", "err", err)
		}
		return
	}
	defer n.release()
	if c.isStopped() {
		return
	}
	c.nc.SetDeadline(time.Time{})
	if c.isStopped() { // Shutdown raced with the deadline reset
		return
	}
	c.srv.addExportConn(n.exp.Name, 1)
	defer c.srv.addExportConn(n.exp.Name, -1)
	c.log = c.log.With("export", n.exp.Name)
	if n.exp.Gone != nil {
		go func() {
			select {
			case <-n.exp.Gone:
				c.log.Warn("nbd export removed: dropping connection")
				c.nc.Close()
			case <-c.ctx.Done():
			}
		}()
	}
	// Larger buffers only now that the client is in. Bytes the client
	// pipelined behind its GO are still in the handshake reader, which the
	// new one reads through.
	c.br = bufio.NewReaderSize(c.br, transmissionBufSize)
	c.bw = bufio.NewWriterSize(c.nc, transmissionBufSize)
	t := newTransmission(c, n)
	t.run()
}

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
	}
}

// minWeight is the budget a request without payload takes, so the budget
// also bounds the number of requests in flight.
const minWeight = 256 << 10

func (t *transmission) run() {
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); t.writer() }()
	err := t.reader()
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
	close(t.replies)
	<-writerDone
}

// reader decodes requests, reads write payloads and admits work. It
// returns nil on NBD_CMD_DISC, or an error on disconnect, a broken stream,
// or Shutdown.
func (t *transmission) reader() error {
	var hb [requestSize]byte
	for {
		if _, err := io.ReadFull(t.c.br, hb[:]); err != nil {
			return err
		}
		req, err := decodeRequest(hb[:])
		if err != nil {
			return err // out of step: the protocol has no resync
		}
		if req.typ == cmdDisc {
			return nil
		}
		errno := validateRequest(req, t.sess)
		if errno != 0 {
			if req.typ == cmdWrite {
				// The payload must still be consumed to stay in step; it
				// is skipped, never stored.
				if _, err := t.c.br.Discard(int(req.length)); err != nil {
					return err
				}
			}
			t.sendError(req, errno, "")
			continue
		}
		tk := t.ticketFor(req)
		if err := t.acquire(tk); err != nil {
			return err
		}
		var buf []byte
		if req.typ == cmdWrite {
			buf = t.bufs.get(int(req.length))
			if err := t.readPayload(buf); err != nil {
				t.bufs.put(buf)
				t.release(tk)
				return err
			}
		}
		t.dispatch(req, buf, tk)
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
	}
}

// writer sends replies in completion order and flushes the socket buffer
// whenever no other reply is waiting, so pipelined replies share syscalls.
// A reply that makes no progress for WriteTimeout (the client stopped
// reading) drops the connection; after a failed write it only drains, so
// workers never block and every buffer and ticket goes back.
func (t *transmission) writer() {
	to := t.c.srv.opts.WriteTimeout
	dw := deadlineWriter{nc: t.c.nc, timeout: to, renewEvery: min(deadlineRenew, to/4)}
	w := t.c.bw
	w.Reset(&dw)
	var werr error
	for r := range t.replies {
		if werr == nil {
			werr = writeReply(w, r)
			if werr == nil && len(t.replies) == 0 {
				werr = w.Flush()
			}
			if werr != nil {
				t.writeFailed(werr)
			}
		}
		r.free()
	}
	if werr == nil {
		if err := w.Flush(); err != nil {
			t.writeFailed(err)
		}
	}
}

// writeReply hands one reply to w; data larger than writeChunk goes in
// pieces, so that the write deadline is renewed while a slow client still
// takes it.
func writeReply(w *bufio.Writer, r *reply) error {
	if _, err := w.Write(r.hdr[:r.hlen]); err != nil {
		return err
	}
	for d := r.data; len(d) > 0; {
		k := min(len(d), writeChunk)
		if _, err := w.Write(d[:k]); err != nil {
			return err
		}
		d = d[k:]
	}
	return nil
}

func (t *transmission) writeFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.c.log.Warn("nbd client stopped reading replies: dropping the connection",
			"write_timeout", t.c.srv.opts.WriteTimeout)
	case errors.Is(err, net.ErrClosed):
		// We closed it (disconnect, Shutdown cut short).
	default:
		t.c.log.Info("nbd reply write failed", "err", err)
	}
	t.c.drop()
}

// deadlineWriter writes to nc with a write deadline of timeout from (about)
// the start of each write; it renews the deadline at most once per
// renewEvery, so small replies do not each pay for it.
type deadlineWriter struct {
	nc         net.Conn
	timeout    time.Duration
	renewEvery time.Duration
	renewed    time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.renewed) >= d.renewEvery {
		if err := d.nc.SetWriteDeadline(now.Add(d.timeout)); err != nil {
			return 0, err
		}
		d.renewed = now
	}
	return d.nc.Write(p)
}
