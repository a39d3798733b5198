package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// errEndSession ends the negotiation without entering transmission (abort,
// a client that does not speak fixed newstyle, a broken stream).
var errEndSession = errors.New("session ended during negotiation")

// negotiated is what the option phase hands to transmission.
type negotiated struct {
	exp        *Export
	release    func()
	structured bool
	meta       []metaSel
}

// metaSel is one meta context selected with NBD_OPT_SET_META_CONTEXT.
type metaSel struct {
	id   uint32
	name string
}

// negotiate runs the fixed newstyle handshake and the option haggling.
func (c *conn) negotiate() (*negotiated, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], optMagic)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNew|flagNoZeroes)
	if _, err := c.bw.Write(hello[:]); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, err
	}
	cflags := binary.BigEndian.Uint32(cf[:])
	if cflags&^knownCliFlags != 0 {
		return nil, fmt.Errorf("client flags %#x: %w", cflags, errEndSession)
	}
	c.fixed = cflags&cflagFixedNew != 0
	c.noZeroes = cflags&cflagNoZeroes != 0

	st := &optState{}
	for {
		n, err := c.option(st)
		if err != nil || n != nil {
			if err != nil && st.pending != nil {
				st.pending.release()
			}
			return n, err
		}
	}
}

// optState is the negotiation state carried between options.
type optState struct {
	structured bool
	tls        bool
	metaExport string
	meta       []metaSel
	pending    *negotiated // set only for the return of a GO
}

// option reads and answers one option. It returns a non-nil negotiated
// when the client entered transmission.
func (c *conn) option(st *optState) (*negotiated, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return nil, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != optMagic {
		return nil, fmt.Errorf("option magic %#x: %w", m, errEndSession)
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	data, skipped, err := c.readOptionData(opt, n)
	if err != nil {
		return nil, err
	}
	if !c.fixed && opt != optExportName && opt != optAbort && opt != optList {
		// Old newstyle clients cannot parse an error reply.
		return nil, fmt.Errorf("option %d from a non-fixed-newstyle client: %w", opt, errEndSession)
	}
	// Admission (door.go): TLS first where required, then who the client is.
	if refused, err := c.refuseWithoutTLS(st, opt); refused {
		return nil, err
	}
	if refused, err := c.refuseUnauthorized(opt); refused {
		return nil, err
	}

	if skipped {
		if r, ok := oversizeReply(opt); ok {
			return nil, c.optReply(opt, r, fmt.Appendf(nil, "option %d with %d bytes of data is too big", opt, n))
		}
	}

	switch opt {
	case optExportName:
		return c.optExportName(st, string(data))
	case optAbort:
		c.optReply(opt, repAck, nil)
		return nil, errEndSession
	case optList:
		if n != 0 {
			return nil, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		for _, name := range c.srv.exports.ListExports(c.ctx) {
			b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			b = append(b, name...)
			// The rest of the reply is the description, when there is one.
			if exp, release, err := c.srv.exports.OpenExport(c.ctx, name); err == nil {
				b = append(b, exp.Description...)
				release()
			}
			if err := c.optReply(opt, repServer, b); err != nil {
				return nil, err
			}
		}
		return nil, c.optReply(opt, repAck, nil)
	case optStartTLS:
		return nil, c.optStartTLS(st, n)
	case optStructuredReply:
		if n != 0 {
			return nil, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		st.structured = true
		return nil, c.optReply(opt, repAck, nil)
	case optInfo, optGo:
		return c.optInfoGo(st, opt, data)
	case optListMetaContext, optSetMetaContext:
		return nil, c.optMeta(st, opt, data)
	default:
		return nil, c.optReply(opt, repErrUnsup, fmt.Appendf(nil, "option %d is not supported", opt))
	}
}

// optReply sends one option reply and flushes.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], optReplyMagic)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
	return c.bw.Flush()
}

func (c *conn) optExportName(st *optState, name string) (*negotiated, error) {
	exp, release, err := c.srv.exports.OpenExport(c.ctx, name)
	if err != nil {
		// No error reply exists for NBD_OPT_EXPORT_NAME: close.
		return nil, fmt.Errorf("export %q: %w", name, err)
	}
	var b [10 + exportNamePadding]byte
	binary.BigEndian.PutUint64(b[0:], uint64(exp.Device.Size()))
	binary.BigEndian.PutUint16(b[8:], transmitFlags(exp, st.structured))
	out := b[:10]
	if !c.noZeroes {
		out = b[:]
	}
	if _, err := c.bw.Write(out); err != nil {
		release()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		release()
		return nil, err
	}
	return exportNameNegotiated(st, name, exp, release), nil
}

func (c *conn) optInfoGo(st *optState, opt uint32, data []byte) (*negotiated, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, c.optReply(opt, optRepFor(err), []byte(err.Error()))
	}
	exp, release, err := c.srv.exports.OpenExport(c.ctx, req.name)
	if err != nil {
		code, msg := openRefusal(err)
		return nil, c.optReply(opt, code, msg)
	}
	caps := exp.Device.Caps()
	var ib []byte
	ib = binary.BigEndian.AppendUint16(ib, infoExport)
	ib = binary.BigEndian.AppendUint64(ib, uint64(exp.Device.Size()))
	ib = binary.BigEndian.AppendUint16(ib, transmitFlags(exp, st.structured))
	if err := c.optReply(opt, repInfo, ib); err != nil {
		release()
		return nil, err
	}
	for _, t := range req.infos {
		var b []byte
		switch t {
		case infoName:
			b = binary.BigEndian.AppendUint16(nil, infoName)
			b = append(b, exp.Name...)
		case infoDescription:
			if exp.Description == "" {
				continue
			}
			b = binary.BigEndian.AppendUint16(nil, infoDescription)
			b = append(b, exp.Description...)
		default:
			continue // block size always follows; unknown types are ignored
		}
		if err := c.optReply(opt, repInfo, b); err != nil {
			release()
			return nil, err
		}
	}
	// Block size constraints are always sent: MinBlock 1 asks nothing of a
	// client that did not request them.
	bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, max(caps.MinBlock, 1))
	bs = binary.BigEndian.AppendUint32(bs, max(caps.PrefBlock, caps.MinBlock, 1))
	bs = binary.BigEndian.AppendUint32(bs, payloadLimit(caps))
	if err := c.optReply(opt, repInfo, bs); err != nil {
		release()
		return nil, err
	}
	if opt == optInfo {
		release()
		return nil, c.optReply(opt, repAck, nil)
	}
	n := &negotiated{exp: exp, release: release, structured: st.structured}
	if st.metaExport == req.name {
		n.meta = st.meta
	}
	st.pending = n
	if err := c.optReply(opt, repAck, nil); err != nil {
		return nil, err
	}
	return n, nil
}

func (c *conn) optMeta(st *optState, opt uint32, data []byte) error {
	if !st.structured {
		return c.optReply(opt, repErrInvalid, []byte("meta contexts need NBD_OPT_STRUCTURED_REPLY first"))
	}
	req, err := parseMetaRequest(data)
	if err != nil {
		return c.optReply(opt, optRepFor(err), []byte(err.Error()))
	}
	exp, release, err := c.srv.exports.OpenExport(c.ctx, req.export)
	if err != nil {
		code, msg := openRefusal(err)
		return c.optReply(opt, code, msg)
	}
	avail := exp.Device.Caps().MetaContexts
	release()
	sel := matchMeta(avail, req.queries, opt == optListMetaContext)
	if opt == optSetMetaContext {
		st.metaExport = req.export
		st.meta = st.meta[:0]
	}
	for _, name := range sel {
		id := metaID(avail, name)
		if opt == optSetMetaContext {
			st.meta = append(st.meta, metaSel{id: id, name: name})
		}
		b := binary.BigEndian.AppendUint32(nil, id)
		if err := c.optReply(opt, repMetaContext, append(b, name...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// metaID is a context's id on this server: its index in the export's list,
// plus one so that 0 never appears.
func metaID(avail []string, name string) uint32 {
	for i, a := range avail {
		if a == name {
			return uint32(i + 1)
		}
	}
	return 0
}

func (c *conn) optStartTLS(st *optState, n uint32) error {
	if n != 0 {
		return c.optReply(optStartTLS, repErrInvalid, []byte("NBD_OPT_STARTTLS takes no data"))
	}
	if c.srv.opts.TLS == nil {
		return c.optReply(optStartTLS, repErrUnsup, []byte("this server has no TLS configured"))
	}
	if st.tls {
		return c.optReply(optStartTLS, repErrInvalid, []byte("TLS is already active"))
	}
	if err := c.optReply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	tc := tls.Server(c.nc, c.srv.opts.TLS)
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.opts.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return c.tlsHandshakeFailed(err)
	}
	st.tls = true
	// Everything negotiated in clear text is forgotten (spec: STARTTLS).
	*st = optState{tls: true}
	c.nc = tc
	c.br = bufio.NewReaderSize(tc, handshakeBufSize)
	c.bw = bufio.NewWriterSize(tc, handshakeBufSize)
	// From now on Exports and the device see who the peer is (PeerTLS).
	c.ctx = withPeerTLS(c.ctx, tc.ConnectionState())
	return nil
}

// transmitFlags are the export flags for a device's capabilities.
func transmitFlags(exp *Export, structured bool) uint16 {
	caps := exp.Device.Caps()
	f := tflagHasFlags | tflagZeroes | tflagCache
	if exp.ReadOnly || caps.ReadOnly {
		f |= tflagReadOnly
	}
	if caps.Flush {
		f |= tflagFlush
	}
	if caps.FUA {
		f |= tflagFUA
	}
	if caps.Trim {
		f |= tflagTrim
	}
	if caps.FastZero {
		f |= tflagFastZero
	}
	if caps.MultiConn {
		f |= tflagMultiConn
	}
	if structured {
		f |= tflagDF
	}
	return f
}

// payloadLimit is the advertised maximum payload.
func payloadLimit(caps blockdev.Caps) uint32 {
	if caps.MaxPayload == 0 || caps.MaxPayload > MaxPayload {
		return MaxPayload
	}
	return caps.MaxPayload
}

// deadline helpers keep negotiation bounded without touching transmission.
func (c *conn) setHandshakeDeadline() {
	c.nc.SetDeadline(time.Now().Add(c.srv.opts.HandshakeTimeout))
}
