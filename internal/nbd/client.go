package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ClientOptions configure Dial.
type ClientOptions struct {
	// TLS is used when the target asks for TLS (nbds://); ServerName
	// and RootCAs/Certificates come from here.
	TLS *tls.Config
	// MetaContexts to select (for BlockStatus), e.g. base:allocation.
	MetaContexts []string
}

// Client is a connection to an NBD export. It implements blockdev.Device,
// so a remote export can sit at the bottom of a stack (a mirror target).
// All methods are safe for concurrent use; requests are pipelined.
type Client struct {
	nc   net.Conn
	raw  net.Conn // the socket under nc (nc itself without TLS): Abort resets it
	size int64
	caps blockdev.Caps
	meta map[string]uint32 // context name -> id

	wmu    sync.Mutex // guards bw and request writes (one request at a time on the wire)
	bw     *bufio.Writer
	queued atomic.Int64 // senders between wanting wmu and having written: the last one flushes

	mu      sync.Mutex // guards pending, nextH, err
	pending map[uint64]*call
	nextH   uint64
	err     error // set once the connection failed; every later call fails with it

	done chan struct{} // closed when the reply reader exits
}

var _ blockdev.Device = (*Client)(nil)

// Dial connects to t and negotiates with NBD_OPT_GO.
func Dial(ctx context.Context, t Target, opts ClientOptions) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, t.Network, t.Address)
	if err != nil {
		return nil, fmt.Errorf("dial nbd %s %s: %w", t.Network, t.Address, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	c := &Client{nc: nc, raw: nc, pending: map[uint64]*call{}, done: make(chan struct{}), meta: map[string]uint32{}}
	// A cancelled ctx ends the handshake too (a server that never answers,
	// such as a connection left in a full listen queue).
	stop := context.AfterFunc(ctx, func() { resetConn(nc) })
	err = c.handshake(t, opts)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		resetConn(nc)
		return nil, fmt.Errorf("nbd handshake with %s export %q: %w", t.Address, t.Export, err)
	}
	c.nc.SetDeadline(timeZero)
	c.bw = bufio.NewWriterSize(c.nc, 256<<10)
	go c.readReplies(bufio.NewReaderSize(c.nc, 256<<10))
	return c, nil
}

// ReplyError is an option error reply from the server.
type ReplyError struct {
	Option uint32
	Type   uint32
	Msg    string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("server refused option %d (reply %#x): %s", e.Option, e.Type, e.Msg)
}

// Unwrap maps the refusals of OpenExport back to the sentinels a server's
// Exports returns to send them (openRefusal): NBD_REP_ERR_UNKNOWN is
// ErrUnknownExport, NBD_REP_ERR_POLICY ErrNotPermitted. So a client tells
// the kinds apart by reply code, never by the server's message.
func (e *ReplyError) Unwrap() error {
	switch e.Type {
	case repErrUnknown:
		return ErrUnknownExport
	case repErrPolicy:
		return ErrNotPermitted
	}
	return nil
}

func (c *Client) handshake(t Target, opts ClientOptions) error {
	br := bufio.NewReader(c.nc)
	var hello [18]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != optMagic {
		return errors.New("not a newstyle NBD server")
	}
	sflags := binary.BigEndian.Uint16(hello[16:])
	if sflags&flagFixedNew == 0 {
		return errors.New("server does not speak fixed newstyle")
	}
	cflags := cflagFixedNew
	if sflags&flagNoZeroes != 0 {
		cflags |= cflagNoZeroes
	}
	h := &clientHS{c: c, br: br}
	if err := h.send(binary.BigEndian.AppendUint32(nil, cflags)); err != nil {
		return err
	}
	if t.TLS {
		if err := h.startTLS(opts.TLS); err != nil {
			return err
		}
	}
	if _, err := h.option(optStructuredReply, nil, nil); err != nil {
		return err
	}
	if len(opts.MetaContexts) > 0 {
		_, err := h.option(optSetMetaContext, metaPayload(t.Export, opts.MetaContexts...), func(typ uint32, d []byte) {
			if typ == repMetaContext && len(d) >= 4 {
				c.meta[string(d[4:])] = binary.BigEndian.Uint32(d)
			}
		})
		if err != nil {
			return err
		}
	}
	goData := binary.BigEndian.AppendUint32(nil, uint32(len(t.Export)))
	goData = append(goData, t.Export...)
	goData = binary.BigEndian.AppendUint16(goData, 1)
	goData = binary.BigEndian.AppendUint16(goData, infoBlockSize)
	var tflags uint16
	_, err := h.option(optGo, goData, func(typ uint32, d []byte) {
		if typ != repInfo || len(d) < 2 {
			return
		}
		switch binary.BigEndian.Uint16(d) {
		case infoExport:
			if len(d) >= 12 {
				c.size = int64(binary.BigEndian.Uint64(d[2:]))
				tflags = binary.BigEndian.Uint16(d[10:])
			}
		case infoBlockSize:
			if len(d) >= 14 {
				c.caps.MinBlock = binary.BigEndian.Uint32(d[2:])
				c.caps.PrefBlock = binary.BigEndian.Uint32(d[6:])
				c.caps.MaxPayload = binary.BigEndian.Uint32(d[10:])
			}
		}
	})
	if err != nil {
		return err
	}
	c.caps.ReadOnly = tflags&tflagReadOnly != 0
	c.caps.Flush = tflags&tflagFlush != 0
	c.caps.FUA = tflags&tflagFUA != 0
	c.caps.Trim = tflags&tflagTrim != 0
	c.caps.Zero = tflags&tflagZeroes != 0
	c.caps.FastZero = tflags&tflagFastZero != 0
	c.caps.MultiConn = tflags&tflagMultiConn != 0
	c.caps.Cache = tflags&tflagCache != 0
	if c.caps.ReadOnly {
		// Narrowed: nothing can be written, so no write feature applies.
		c.caps.FUA, c.caps.Trim, c.caps.Zero, c.caps.FastZero = false, false, false, false
	}
	c.caps.MinBlock = max(c.caps.MinBlock, 1)
	if c.caps.MaxPayload == 0 || c.caps.MaxPayload > MaxPayload {
		c.caps.MaxPayload = MaxPayload
	}
	for name := range c.meta {
		c.caps.MetaContexts = append(c.caps.MetaContexts, name)
	}
	if br.Buffered() > 0 {
		return errors.New("server sent data before transmission")
	}
	return nil
}

// metaPayload encodes a LIST/SET_META_CONTEXT payload.
func metaPayload(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// clientHS is the client side of option haggling.
type clientHS struct {
	c  *Client
	br *bufio.Reader
}

func (h *clientHS) send(b []byte) error {
	_, err := h.c.nc.Write(b)
	return err
}

// option sends one option and reads replies until ACK or an error reply;
// each non-final reply goes to each.
func (h *clientHS) option(opt uint32, data []byte, each func(typ uint32, d []byte)) (uint32, error) {
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if err := h.send(append(b, data...)); err != nil {
		return 0, err
	}
	for {
		var rh [20]byte
		if _, err := io.ReadFull(h.br, rh[:]); err != nil {
			return 0, err
		}
		if binary.BigEndian.Uint64(rh[0:]) != optReplyMagic || binary.BigEndian.Uint32(rh[8:]) != opt {
			return 0, fmt.Errorf("bad reply to option %d", opt)
		}
		typ := binary.BigEndian.Uint32(rh[12:])
		n := binary.BigEndian.Uint32(rh[16:])
		if n > maxOptionData {
			return 0, fmt.Errorf("option reply of %d bytes", n)
		}
		d := make([]byte, n)
		if _, err := io.ReadFull(h.br, d); err != nil {
			return 0, err
		}
		switch {
		case typ == repAck:
			return typ, nil
		case typ&repErrBit != 0:
			return typ, &ReplyError{Option: opt, Type: typ, Msg: string(d)}
		case each != nil:
			each(typ, d)
		}
	}
}

func (h *clientHS) startTLS(cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("nbds:// needs a TLS configuration")
	}
	if _, err := h.option(optStartTLS, nil, nil); err != nil {
		return err
	}
	if h.br.Buffered() > 0 {
		return errors.New("server sent data before the TLS handshake")
	}
	tc := tls.Client(h.c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	h.c.nc = tc
	h.br = bufio.NewReader(tc)
	return nil
}
