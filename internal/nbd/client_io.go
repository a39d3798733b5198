package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

var timeZero time.Time

// errClientClosed: the connection was closed by Close.
var errClientClosed = fmt.Errorf("nbd client: %w", blockdev.ErrClosed)

// Errno is an error the server returned for a request. It unwraps to the
// blockdev sentinel with the same meaning, so callers test errors.Is.
type Errno struct {
	Cmd   uint16
	Errno uint32
	Msg   string
}

func (e *Errno) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("nbd command %d: errno %d: %s", e.Cmd, e.Errno, e.Msg)
	}
	return fmt.Sprintf("nbd command %d: %v", e.Cmd, syscall.Errno(e.Errno))
}

func (e *Errno) Unwrap() []error {
	errs := []error{syscall.Errno(e.Errno)}
	switch e.Errno {
	case ePERM:
		errs = append(errs, blockdev.ErrReadOnly)
	case eNOSPC:
		errs = append(errs, blockdev.ErrNoSpace)
	case eNOTSUP:
		if e.Cmd == cmdWriteZeroes {
			errs = append(errs, blockdev.ErrNotFast)
		} else {
			errs = append(errs, blockdev.ErrNotSupported)
		}
	case eSHUTDOWN:
		errs = append(errs, blockdev.ErrClosed)
	}
	return errs
}

// call is one request in flight.
type call struct {
	cmd    uint16
	off    uint64
	buf    []byte // READ destination
	metaID uint32
	ext    []blockdev.Extent
	err    error
	done   chan struct{}
}

// do sends one request and waits for its reply. If ctx ends first the
// connection is torn down (an NBD request cannot be cancelled), so that
// no reply can land in buf after do returns.
func (c *Client) do(ctx context.Context, cl *call, flags uint16, length uint32, payload []byte) error {
	cl.done = make(chan struct{})
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.nextH++
	h := c.nextH
	c.pending[h] = cl
	c.mu.Unlock()

	var hb [requestSize]byte
	encodeRequest(hb[:], request{flags: flags, typ: cl.cmd, handle: h, off: cl.off, length: length})
	// Requests queued behind this one are sent in the same syscall: the
	// last sender of a burst flushes (pipelined writes cost one write(2)
	// per burst, not per request).
	// A peer that stops reading (a stopped process, a black-holed link)
	// blocks the send once the socket buffer is full: ctx ending tears the
	// connection down, which ends the send too.
	stop := context.AfterFunc(ctx, func() { c.fail(ctx.Err()) })
	c.queued.Add(1)
	c.wmu.Lock()
	_, err := c.bw.Write(hb[:])
	if err == nil && len(payload) > 0 {
		_, err = c.bw.Write(payload)
	}
	if c.queued.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	stop()
	if err != nil {
		c.fail(fmt.Errorf("send nbd request: %w", err))
	}
	select {
	case <-cl.done:
		return cl.err
	case <-ctx.Done():
		c.fail(ctx.Err())
		<-c.done
		return ctx.Err()
	}
}

// fail marks the connection broken, resets it and fails every pending
// call. A broken connection is reset, not closed: a request it had not
// sent yet has failed for its caller and must never reach the server
// later (the kernel would still send the unsent bytes of a closed socket
// when a cut link comes back).
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	resetConn(c.raw)
}

// resetConn closes nc so that its unsent data is discarded: on TCP with
// SO_LINGER 0, which sends a reset instead of a FIN. The TLS layer is
// bypassed (its close_notify alert could wait for a dead peer). A unix
// socket has no unsent data: what was written is already the server's.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}

// readReplies dispatches replies to their calls until the connection ends.
func (c *Client) readReplies(br *bufio.Reader) {
	defer close(c.done)
	err := c.replyLoop(br)
	c.fail(fmt.Errorf("nbd connection lost: %w", err))
	c.mu.Lock()
	for h, cl := range c.pending {
		cl.err = c.err
		close(cl.done)
		delete(c.pending, h)
	}
	c.mu.Unlock()
}

func (c *Client) take(h uint64, remove bool) (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.pending[h]
	if !ok {
		return nil, fmt.Errorf("reply for unknown handle %d", h)
	}
	if remove {
		delete(c.pending, h)
	}
	return cl, nil
}

func (c *Client) replyLoop(br *bufio.Reader) error {
	var mb [4]byte
	for {
		if _, err := io.ReadFull(br, mb[:]); err != nil {
			return err
		}
		switch binary.BigEndian.Uint32(mb[:]) {
		case simpleMagic:
			var b [12]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return err
			}
			cl, err := c.take(binary.BigEndian.Uint64(b[4:]), true)
			if err != nil {
				return err
			}
			if e := binary.BigEndian.Uint32(b[:]); e != 0 {
				cl.err = &Errno{Cmd: cl.cmd, Errno: e}
			} else if cl.cmd == cmdRead {
				if _, err := io.ReadFull(br, cl.buf); err != nil {
					return err
				}
			}
			close(cl.done)
		case structuredMagic:
			if err := c.chunk(br); err != nil {
				return err
			}
		default:
			return errors.New("bad reply magic")
		}
	}
}

func (c *Client) chunk(br *bufio.Reader) error {
	var b [16]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return err
	}
	flags, typ := binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
	h, n := binary.BigEndian.Uint64(b[4:]), binary.BigEndian.Uint32(b[12:])
	done := flags&chunkFlagDone != 0
	cl, err := c.take(h, done)
	if err != nil {
		return err
	}
	switch typ {
	case chunkOffsetData:
		if n < 8 {
			return errors.New("short OFFSET_DATA chunk")
		}
		var ob [8]byte
		if _, err := io.ReadFull(br, ob[:]); err != nil {
			return err
		}
		rel := binary.BigEndian.Uint64(ob[:]) - cl.off
		if cl.cmd != cmdRead || rel > uint64(len(cl.buf)) || uint64(n-8) > uint64(len(cl.buf))-rel {
			return errors.New("OFFSET_DATA outside the request")
		}
		if _, err := io.ReadFull(br, cl.buf[rel:rel+uint64(n-8)]); err != nil {
			return err
		}
	default:
		if n > 64<<20 {
			return fmt.Errorf("chunk of %d bytes", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return err
		}
		if err := cl.apply(typ, p); err != nil {
			return err
		}
	}
	if done {
		close(cl.done)
	}
	return nil
}

// apply handles a non-data chunk payload.
func (cl *call) apply(typ uint16, p []byte) error {
	switch typ {
	case chunkNone:
	case chunkOffsetHole:
		if len(p) != 12 {
			return errors.New("bad OFFSET_HOLE chunk")
		}
		rel := binary.BigEndian.Uint64(p) - cl.off
		n := uint64(binary.BigEndian.Uint32(p[8:]))
		if cl.cmd != cmdRead || rel > uint64(len(cl.buf)) || n > uint64(len(cl.buf))-rel {
			return errors.New("OFFSET_HOLE outside the request")
		}
		clear(cl.buf[rel : rel+n])
	case chunkBlockStatus:
		if len(p) < 4 || (len(p)-4)%8 != 0 {
			return errors.New("bad BLOCK_STATUS chunk")
		}
		if binary.BigEndian.Uint32(p) != cl.metaID {
			return nil
		}
		for i := 4; i < len(p); i += 8 {
			cl.ext = append(cl.ext, blockdev.Extent{
				Length: int64(binary.BigEndian.Uint32(p[i:])),
				Flags:  binary.BigEndian.Uint32(p[i+4:]),
			})
		}
	default:
		if typ&(1<<15) == 0 {
			return nil // unknown non-error chunks may be ignored
		}
		if len(p) < 6 {
			return errors.New("bad error chunk")
		}
		ml := int(binary.BigEndian.Uint16(p[4:]))
		msg := ""
		if 6+ml <= len(p) {
			msg = string(p[6 : 6+ml])
		}
		cl.err = &Errno{Cmd: cl.cmd, Errno: binary.BigEndian.Uint32(p), Msg: msg}
	}
	return nil
}
