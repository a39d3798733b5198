package nbd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
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

	tr atomic.Pointer[transmission] // once transmission starts (tests look inside)

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
	c.tr.Store(t)
	t.run()
}
