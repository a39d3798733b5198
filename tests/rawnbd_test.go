//go:build integration

package tests

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// The NBD protocol constants the raw client needs (shared/ref/nbd-proto.md). They are spelled out
// here rather than imported so that the tests check the daemon against the protocol document, not
// against the server's own idea of it.
const (
	rawNBDMagic       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	rawOptMagic       uint64 = 0x49484156454f5054 // "IHAVEOPT"
	rawOptReplyMagic  uint64 = 0x0003e889045565a9
	rawReqMagic       uint32 = 0x25609513
	rawSimpleMagic    uint32 = 0x67446698
	rawStructMagic    uint32 = 0x668e33ef
	rawCFlagFixedNew  uint32 = 1 << 0
	rawCFlagNoZeroes  uint32 = 1 << 1
	rawMaxPayload            = 32 << 20 // the protocol's "never treat as an attack" payload size
	rawRequestSize           = 28
	rawTFlagReadOnly  uint16 = 1 << 1
	rawChunkFlagDone  uint16 = 1 << 0
	rawChunkError     uint16 = 1<<15 | 1
	rawInfoExport     uint16 = 0
	rawExportNamePad         = 124
	rawDeadline              = 30 * time.Second // watchdog on every raw connection, not a threshold
	rawClosedDeadline        = 5 * time.Second  // how long closed() waits for the server's EOF
)

// Options.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optSetMetaContext  uint32 = 10
)

// Option replies.
const (
	repAck         uint32 = 1
	repServer      uint32 = 2
	repInfo        uint32 = 3
	repMetaContext uint32 = 4
	repErrUnsup    uint32 = 1<<31 | 1
	repErrInvalid  uint32 = 1<<31 | 3
	repErrUnknown  uint32 = 1<<31 | 6
	repErrTooBig   uint32 = 1<<31 | 9
)

// Commands, command flags and errnos on the wire.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
	cmdFlagFUA     uint16 = 1 << 0
	cmdFlagNoHole  uint16 = 1 << 1
	cmdFlagDF      uint16 = 1 << 2
	ePERM          uint32 = 1
	eINVAL         uint32 = 22
	eNOSPC         uint32 = 28
)

// rawConn is a deliberately naive NBD client that can send anything, to see how the daemon answers
// malformed handshakes and requests. Its methods fail the test on an I/O error, so they must be
// called from the test's goroutine.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw connects to network ("unix" or "tcp") addr and reads the server's greeting.
func dialRaw(t *testing.T, network, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	nc.SetDeadline(time.Now().Add(rawDeadline))
	t.Cleanup(func() { nc.Close() })
	r := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	var hello [18]byte
	r.read(hello[:])
	if binary.BigEndian.Uint64(hello[0:]) != rawNBDMagic || binary.BigEndian.Uint64(hello[8:]) != rawOptMagic {
		t.Fatalf("greeting %x: want NBDMAGIC IHAVEOPT", hello)
	}
	if flags := binary.BigEndian.Uint16(hello[16:]); flags&1 == 0 {
		t.Fatalf("greeting flags %#x: the daemon does not offer the fixed newstyle handshake", flags)
	}
	return r
}

func (r *rawConn) read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatalf("raw read of %d bytes: %v", len(b), err)
	}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("raw write of %d bytes: %v", len(b), err)
	}
}

// clientFlags sends the client's 32-bit flags, the first thing it says.
func (r *rawConn) clientFlags(f uint32) {
	r.t.Helper()
	r.write(binary.BigEndian.AppendUint32(nil, f))
}

// option sends one option with its data; its length field is len(data).
func (r *rawConn) option(opt uint32, data []byte) {
	r.t.Helper()
	r.optionHeader(opt, uint32(len(data)))
	r.write(data)
}

// optionHeader sends an option header announcing length bytes of data, and no data.
func (r *rawConn) optionHeader(opt, length uint32) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, rawOptMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	r.write(binary.BigEndian.AppendUint32(b, length))
}

// optReply reads one option reply to wantOpt and returns its type and data.
func (r *rawConn) optReply(wantOpt uint32) (uint32, []byte) {
	r.t.Helper()
	var h [20]byte
	r.read(h[:])
	if got := binary.BigEndian.Uint64(h[0:]); got != rawOptReplyMagic {
		r.t.Fatalf("option reply magic %#x, want %#x", got, rawOptReplyMagic)
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != wantOpt {
		r.t.Fatalf("reply to option %d, want a reply to option %d", got, wantOpt)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > 1<<20 {
		r.t.Fatalf("option reply announces %d bytes of data", n)
	}
	data := make([]byte, n)
	r.read(data)
	return binary.BigEndian.Uint32(h[12:]), data
}

// optResult is what the server said to one option, up to its final reply.
type optResult struct {
	final   uint32   // the final reply type (ACK or an error)
	infos   [][]byte // the data of every NBD_REP_INFO
	servers []string // the export names of every NBD_REP_SERVER
	message string   // the error string of an error reply
}

// finalReply reads the replies to opt up to and including the final one.
func (r *rawConn) finalReply(opt uint32) optResult {
	r.t.Helper()
	var res optResult
	for {
		typ, data := r.optReply(opt)
		switch typ {
		case repInfo:
			res.infos = append(res.infos, data)
		case repServer:
			if len(data) >= 4 {
				n := binary.BigEndian.Uint32(data)
				if int(n) <= len(data)-4 {
					res.servers = append(res.servers, string(data[4:4+n]))
				}
			}
		case repMetaContext:
		default:
			res.final = typ
			if typ&(1<<31) != 0 {
				res.message = string(data)
			}
			return res
		}
	}
}

// exportInfo decodes the NBD_INFO_EXPORT of a GO or INFO reply: size and transmission flags.
func (res optResult) exportInfo() (size uint64, flags uint16, ok bool) {
	for _, d := range res.infos {
		if len(d) == 12 && binary.BigEndian.Uint16(d) == rawInfoExport {
			return binary.BigEndian.Uint64(d[2:]), binary.BigEndian.Uint16(d[10:]), true
		}
	}
	return 0, 0, false
}

// goPayload is the data of NBD_OPT_GO / NBD_OPT_INFO for name, with no info requests.
func goPayload(name string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

// metaPayload is the data of NBD_OPT_SET_META_CONTEXT for export and queries.
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

// open negotiates into the transmission phase on export with NBD_OPT_GO, optionally with
// structured replies and base:allocation, and returns the export's size and flags.
func (r *rawConn) open(export string, structured bool) (uint64, uint16) {
	r.t.Helper()
	r.clientFlags(rawCFlagFixedNew | rawCFlagNoZeroes)
	if structured {
		r.option(optStructuredReply, nil)
		if typ, _ := r.optReply(optStructuredReply); typ != repAck {
			r.t.Fatalf("NBD_OPT_STRUCTURED_REPLY: reply %#x, want ACK", typ)
		}
		r.option(optSetMetaContext, metaPayload(export, "base:allocation"))
		if res := r.finalReply(optSetMetaContext); res.final != repAck {
			r.t.Fatalf("NBD_OPT_SET_META_CONTEXT: reply %#x %q, want ACK", res.final, res.message)
		}
	}
	r.option(optGo, goPayload(export))
	res := r.finalReply(optGo)
	if res.final != repAck {
		r.t.Fatalf("NBD_OPT_GO %q: reply %#x %q, want ACK", export, res.final, res.message)
	}
	size, flags, ok := res.exportInfo()
	if !ok {
		r.t.Fatalf("NBD_OPT_GO %q: no NBD_INFO_EXPORT before the ACK", export)
	}
	return size, flags
}

// request sends one transmission request followed by payload (which may differ from length on
// purpose).
func (r *rawConn) request(typ, flags uint16, handle, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	b := make([]byte, rawRequestSize, rawRequestSize+len(payload))
	binary.BigEndian.PutUint32(b[0:], rawReqMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	r.write(append(b, payload...))
}

// simpleReply reads one simple reply and returns its handle and errno.
func (r *rawConn) simpleReply() (uint64, uint32) {
	r.t.Helper()
	var h [16]byte
	r.read(h[:])
	if got := binary.BigEndian.Uint32(h[0:]); got != rawSimpleMagic {
		r.t.Fatalf("simple reply magic %#x, want %#x", got, rawSimpleMagic)
	}
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
}

// chunk reads one structured reply chunk: flags, type, handle and payload.
func (r *rawConn) chunk() (uint16, uint16, uint64, []byte) {
	r.t.Helper()
	var h [20]byte
	r.read(h[:])
	if got := binary.BigEndian.Uint32(h[0:]); got != rawStructMagic {
		r.t.Fatalf("structured reply magic %#x, want %#x", got, rawStructMagic)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > rawMaxPayload+4096 {
		r.t.Fatalf("structured chunk announces %d bytes", n)
	}
	p := make([]byte, n)
	r.read(p)
	return binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint64(h[8:]), p
}

// roundTrip writes 4 bytes at off and reads them back: it proves the connection is still in step
// after a bad request.
func (r *rawConn) roundTrip(off uint64, data [4]byte) {
	r.t.Helper()
	r.request(cmdWrite, 0, 1, off, 4, data[:])
	if h, e := r.simpleReply(); h != 1 || e != 0 {
		r.t.Fatalf("write after the bad request: handle %d errno %d, want handle 1 errno 0", h, e)
	}
	r.request(cmdRead, 0, 2, off, 4, nil)
	if h, e := r.simpleReply(); h != 2 || e != 0 {
		r.t.Fatalf("read after the bad request: handle %d errno %d, want handle 2 errno 0", h, e)
	}
	var got [4]byte
	r.read(got[:])
	if got != data {
		r.t.Fatalf("read back %x after the bad request, want %x", got, data)
	}
}

// closed reports whether the server ends the connection (EOF or reset) within rawClosedDeadline,
// discarding anything it sends first.
func (r *rawConn) closed() bool {
	r.nc.SetReadDeadline(time.Now().Add(rawClosedDeadline))
	_, err := io.Copy(io.Discard, r.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}
