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

	// ctx is passed to Exports and the device; it is cancelled only when
	// the connection is torn down, never while requests drain on Shutdown.
	// STARTTLS replaces it, before transmission, with a child carrying the
	// peer's TLS state (PeerTLS); cancel still ends both.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards stopped
	stopped bool       // Shutdown asked the reader to stop
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		srv:    s,
		log:    s.log.With("remote", nc.RemoteAddr().String()),
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 64<<10),
		bw:     bufio.NewWriterSize(nc, 64<<10),
		ctx:    ctx,
		cancel: cancel,
	}
}

// stopReading makes the reader return at its next read (Shutdown).
func (c *conn) stopReading() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.nc.SetReadDeadline(time.Now())
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
	t := newTransmission(c, n)
	t.run()
}

// transmission is the request/reply phase of one connection.
type transmission struct {
	c    *conn
	dev  blockdev.Device
	sess session
	meta []metaSel

	replies chan *reply
	budget  *semaphore.Weighted // payload bytes in flight
	workers sync.WaitGroup
	bufs    *bufPool

	// idle hands a request to a worker waiting for one (dispatch);
	// closed by run when the reader has returned, which ends the idle
	// workers.
	idle chan work
}

// work is one admitted request for a worker.
type work struct {
	req     request
	payload []byte
	weight  int64
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
		meta:    n.meta,
		replies: make(chan *reply, 256),
		idle:    make(chan work),
		budget:  semaphore.NewWeighted(c.srv.opts.InflightBytes),
		bufs:    c.srv.bufs,
	}
}

// minWeight is the budget a request without payload takes, so the budget
// also bounds the number of requests in flight.
const minWeight = 256 << 10

func (t *transmission) run() {
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); t.writer() }()
	err := t.reader()
	if err != nil && !errors.Is(err, io.EOF) && !t.c.isStopped() {
		t.c.log.Info("nbd connection ended", "err", err)
	}
	close(t.idle) // no more work: idle workers return
	t.workers.Wait()
	close(t.replies)
	<-writerDone
}

// reader decodes requests, reads write payloads and admits work. It
// returns on disconnect, a broken stream, or Shutdown.
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
		if req.typ == cmdWrite {
			if errno != 0 {
				// The payload must still be consumed to stay in step.
				if _, err := io.CopyN(io.Discard, t.c.br, int64(req.length)); err != nil {
					return err
				}
				t.sendError(req, errno, "")
				continue
			}
			w := max(int64(req.length), minWeight)
			if err := t.budget.Acquire(t.c.ctx, w); err != nil {
				return err
			}
			buf := t.bufs.get(int(req.length))
			if _, err := io.ReadFull(t.c.br, buf); err != nil {
				t.bufs.put(buf)
				t.budget.Release(w)
				return err
			}
			t.dispatch(req, buf, w)
			continue
		}
		if errno != 0 {
			t.sendError(req, errno, "")
			continue
		}
		w := int64(minWeight)
		if req.typ == cmdRead {
			w = max(int64(req.length), minWeight)
		}
		if err := t.budget.Acquire(t.c.ctx, w); err != nil {
			return err
		}
		t.dispatch(req, nil, w)
	}
}

// dispatch hands a request to an idle worker, or starts one when none is
// waiting. Workers stay for the connection's life, so a request costs a
// channel handoff instead of a new goroutine whose stack grows again
// through the device stack (measured: newproc and stack copies were about
// a tenth of the daemon's CPU under 4 KiB random writes). Their number is
// the connection's peak concurrency, which the budget bounds.
func (t *transmission) dispatch(req request, payload []byte, weight int64) {
	w := work{req: req, payload: payload, weight: weight}
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
		t.handle(w.req, w.payload)
		t.budget.Release(w.weight)
	}
}

// writer sends replies in completion order and flushes the socket buffer
// whenever no other reply is waiting, so pipelined replies share syscalls.
func (t *transmission) writer() {
	w := t.c.bw
	var werr error
	for r := range t.replies {
		if werr == nil {
			_, werr = w.Write(r.hdr[:r.hlen])
			if werr == nil && len(r.data) > 0 {
				_, werr = w.Write(r.data)
			}
			if werr == nil && len(t.replies) == 0 {
				werr = w.Flush()
			}
			if werr != nil {
				// The client is gone: stop reading too; keep draining
				// so workers never block.
				t.c.log.Info("nbd reply write failed", "err", werr)
				t.c.nc.Close()
			}
		}
		r.free()
	}
	if werr == nil {
		w.Flush()
	}
}
