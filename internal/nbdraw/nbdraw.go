// Package nbdraw is a deliberately naive NBD client for tests: it sends
// whatever a test asks, well formed or not, and reads replies byte by
// byte, so tests can see how a server answers malformed handshakes and
// requests. internal/nbd's unit tests and the interop tests in tests/
// both use it.
//
// The protocol's constants are spelled out here from the protocol
// document (shared/ref/nbd-proto.md) rather than imported from
// internal/nbd, so that the tests check the server against the document,
// not against the server's own idea of it.
//
// Every method fails the test on an I/O error, so it must be called from
// the test's goroutine.
package nbdraw

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
	NBDMagic       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	OptMagic       uint64 = 0x49484156454f5054 // "IHAVEOPT"
	OptReplyMagic  uint64 = 0x0003e889045565a9
	ReqMagic       uint32 = 0x25609513
	SimpleMagic    uint32 = 0x67446698
	StructMagic    uint32 = 0x668e33ef
	CFlagFixedNew  uint32 = 1 << 0
	CFlagNoZeroes  uint32 = 1 << 1
	MaxPayload            = 32 << 20 // the protocol's "never treat as an attack" payload size
	RequestSize           = 28
	TFlagReadOnly  uint16 = 1 << 1
	ChunkFlagDone  uint16 = 1 << 0
	ChunkError     uint16 = 1<<15 | 1
	InfoExport     uint16 = 0
	ExportNamePad         = 124
	Deadline              = 30 * time.Second // watchdog on every raw connection, not a threshold
	ClosedDeadline        = 5 * time.Second  // how long closed() waits for the server's EOF
)

// Options.
const (
	OptExportName      uint32 = 1
	OptAbort           uint32 = 2
	OptList            uint32 = 3
	OptInfo            uint32 = 6
	OptGo              uint32 = 7
	OptStructuredReply uint32 = 8
	OptSetMetaContext  uint32 = 10
)

// Option replies.
const (
	RepAck         uint32 = 1
	RepServer      uint32 = 2
	RepInfo        uint32 = 3
	RepMetaContext uint32 = 4
	RepErrUnsup    uint32 = 1<<31 | 1
	RepErrInvalid  uint32 = 1<<31 | 3
	RepErrUnknown  uint32 = 1<<31 | 6
	RepErrTooBig   uint32 = 1<<31 | 9
)

// Commands, command flags and errnos on the wire.
const (
	CmdRead        uint16 = 0
	CmdWrite       uint16 = 1
	CmdDisc        uint16 = 2
	CmdFlush       uint16 = 3
	CmdTrim        uint16 = 4
	CmdCache       uint16 = 5
	CmdWriteZeroes uint16 = 6
	CmdBlockStatus uint16 = 7
	CmdFlagFUA     uint16 = 1 << 0
	CmdFlagNoHole  uint16 = 1 << 1
	CmdFlagDF      uint16 = 1 << 2
	EPERM          uint32 = 1
	EINVAL         uint32 = 22
	ENOSPC         uint32 = 28
)

// Conn is a deliberately naive NBD client that can send anything, to see how the daemon answers
// malformed handshakes and requests. Its methods fail the test on an I/O error, so they must be
// called from the test's goroutine.
type Conn struct {
	NC net.Conn      // the connection, for deadlines, closing or writes that must not fail the test
	BR *bufio.Reader // reads NC; read through it, not NC, once the greeting was read
	t  testing.TB
}

// Dial connects to network ("unix" or "tcp") addr and reads the server's greeting.
func Dial(t testing.TB, network, addr string) *Conn {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	nc.SetDeadline(time.Now().Add(Deadline))
	t.Cleanup(func() { nc.Close() })
	r := &Conn{NC: nc, BR: bufio.NewReader(nc), t: t}
	var hello [18]byte
	r.Read(hello[:])
	if binary.BigEndian.Uint64(hello[0:]) != NBDMagic || binary.BigEndian.Uint64(hello[8:]) != OptMagic {
		t.Fatalf("greeting %x: want NBDMAGIC IHAVEOPT", hello)
	}
	if flags := binary.BigEndian.Uint16(hello[16:]); flags&1 == 0 {
		t.Fatalf("greeting flags %#x: the daemon does not offer the fixed newstyle handshake", flags)
	}
	return r
}

// Read reads exactly len(b) bytes.
func (r *Conn) Read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.BR, b); err != nil {
		r.t.Fatalf("raw read of %d bytes: %v", len(b), err)
	}
}

// Write writes b.
func (r *Conn) Write(b []byte) {
	r.t.Helper()
	if _, err := r.NC.Write(b); err != nil {
		r.t.Fatalf("raw write of %d bytes: %v", len(b), err)
	}
}

// ClientFlags sends the client's 32-bit flags, the first thing it says.
func (r *Conn) ClientFlags(f uint32) {
	r.t.Helper()
	r.Write(binary.BigEndian.AppendUint32(nil, f))
}

// Option sends one option with its data; its length field is len(data).
func (r *Conn) Option(opt uint32, data []byte) {
	r.t.Helper()
	r.OptionHeader(opt, uint32(len(data)))
	r.Write(data)
}

// OptionHeader sends an option header announcing length bytes of data, and no data.
func (r *Conn) OptionHeader(opt, length uint32) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, OptMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	r.Write(binary.BigEndian.AppendUint32(b, length))
}

// OptReply reads one option reply to wantOpt and returns its type and data.
func (r *Conn) OptReply(wantOpt uint32) (uint32, []byte) {
	r.t.Helper()
	var h [20]byte
	r.Read(h[:])
	if got := binary.BigEndian.Uint64(h[0:]); got != OptReplyMagic {
		r.t.Fatalf("option reply magic %#x, want %#x", got, OptReplyMagic)
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != wantOpt {
		r.t.Fatalf("reply to option %d, want a reply to option %d", got, wantOpt)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > 1<<20 {
		r.t.Fatalf("option reply announces %d bytes of data", n)
	}
	data := make([]byte, n)
	r.Read(data)
	return binary.BigEndian.Uint32(h[12:]), data
}

// Result is what the server said to one option, up to its final reply.
type Result struct {
	Final   uint32   // the final reply type (ACK or an error)
	Infos   [][]byte // the data of every NBD_REP_INFO
	Servers []string // the export names of every NBD_REP_SERVER
	Message string   // the error string of an error reply
}

// FinalReply reads the replies to opt up to and including the final one.
func (r *Conn) FinalReply(opt uint32) Result {
	r.t.Helper()
	var res Result
	for {
		typ, data := r.OptReply(opt)
		switch typ {
		case RepInfo:
			res.Infos = append(res.Infos, data)
		case RepServer:
			if len(data) >= 4 {
				n := binary.BigEndian.Uint32(data)
				if int(n) <= len(data)-4 {
					res.Servers = append(res.Servers, string(data[4:4+n]))
				}
			}
		case RepMetaContext:
		default:
			res.Final = typ
			if typ&(1<<31) != 0 {
				res.Message = string(data)
			}
			return res
		}
	}
}

// ExportInfo decodes the NBD_INFO_EXPORT of a GO or INFO reply: size and transmission flags.
func (res Result) ExportInfo() (size uint64, flags uint16, ok bool) {
	for _, d := range res.Infos {
		if len(d) == 12 && binary.BigEndian.Uint16(d) == InfoExport {
			return binary.BigEndian.Uint64(d[2:]), binary.BigEndian.Uint16(d[10:]), true
		}
	}
	return 0, 0, false
}

// GoPayload is the data of NBD_OPT_GO / NBD_OPT_INFO for name, with no info requests.
func GoPayload(name string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

// MetaPayload is the data of NBD_OPT_SET_META_CONTEXT for export and queries.
func MetaPayload(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// Open negotiates into the transmission phase on export with NBD_OPT_GO, optionally with
// structured replies and base:allocation, and returns the export's size and flags.
func (r *Conn) Open(export string, structured bool) (uint64, uint16) {
	r.t.Helper()
	r.ClientFlags(CFlagFixedNew | CFlagNoZeroes)
	if structured {
		r.Option(OptStructuredReply, nil)
		if typ, _ := r.OptReply(OptStructuredReply); typ != RepAck {
			r.t.Fatalf("NBD_OPT_STRUCTURED_REPLY: reply %#x, want ACK", typ)
		}
		r.Option(OptSetMetaContext, MetaPayload(export, "base:allocation"))
		if res := r.FinalReply(OptSetMetaContext); res.Final != RepAck {
			r.t.Fatalf("NBD_OPT_SET_META_CONTEXT: reply %#x %q, want ACK", res.Final, res.Message)
		}
	}
	r.Option(OptGo, GoPayload(export))
	res := r.FinalReply(OptGo)
	if res.Final != RepAck {
		r.t.Fatalf("NBD_OPT_GO %q: reply %#x %q, want ACK", export, res.Final, res.Message)
	}
	size, flags, ok := res.ExportInfo()
	if !ok {
		r.t.Fatalf("NBD_OPT_GO %q: no NBD_INFO_EXPORT before the ACK", export)
	}
	return size, flags
}

// Request sends one transmission request followed by payload (which may differ from length on
// purpose).
func (r *Conn) Request(typ, flags uint16, handle, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	b := make([]byte, RequestSize, RequestSize+len(payload))
	binary.BigEndian.PutUint32(b[0:], ReqMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	r.Write(append(b, payload...))
}

// SimpleReply reads one simple reply and returns its handle and errno.
func (r *Conn) SimpleReply() (uint64, uint32) {
	r.t.Helper()
	var h [16]byte
	r.Read(h[:])
	if got := binary.BigEndian.Uint32(h[0:]); got != SimpleMagic {
		r.t.Fatalf("simple reply magic %#x, want %#x", got, SimpleMagic)
	}
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
}

// Chunk reads one structured reply chunk: flags, type, handle and payload.
func (r *Conn) Chunk() (uint16, uint16, uint64, []byte) {
	r.t.Helper()
	var h [20]byte
	r.Read(h[:])
	if got := binary.BigEndian.Uint32(h[0:]); got != StructMagic {
		r.t.Fatalf("structured reply magic %#x, want %#x", got, StructMagic)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > MaxPayload+4096 {
		r.t.Fatalf("structured chunk announces %d bytes", n)
	}
	p := make([]byte, n)
	r.Read(p)
	return binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint64(h[8:]), p
}

// RoundTrip writes 4 bytes at off and reads them back: it proves the
// connection is still in step after a bad request. Its handles
// (RoundTripHandle and the next) are unlikely to clash with a test's.
func (r *Conn) RoundTrip(off uint64, data [4]byte) {
	r.t.Helper()
	const w, rd = RoundTripHandle, RoundTripHandle + 1
	r.Request(CmdWrite, 0, w, off, 4, data[:])
	if h, e := r.SimpleReply(); h != w || e != 0 {
		r.t.Fatalf("write after the bad request: handle %#x errno %d, want handle %#x errno 0", h, e, w)
	}
	r.Request(CmdRead, 0, rd, off, 4, nil)
	if h, e := r.SimpleReply(); h != rd || e != 0 {
		r.t.Fatalf("read after the bad request: handle %#x errno %d, want handle %#x errno 0", h, e, rd)
	}
	var got [4]byte
	r.Read(got[:])
	if got != data {
		r.t.Fatalf("read back %x after the bad request, want %x", got, data)
	}
}

// RoundTripHandle is the handle of RoundTrip's write (its read's is one
// more).
const RoundTripHandle uint64 = 0x7e57_0000_0000_0001

// Closed reports whether the server ends the connection (EOF or reset) within ClosedDeadline,
// discarding anything it sends first.
func (r *Conn) Closed() bool {
	r.NC.SetReadDeadline(time.Now().Add(ClosedDeadline))
	_, err := io.Copy(io.Discard, r.BR)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// ClosedSilently reports whether the server ends the connection within
// ClosedDeadline without sending another byte first.
func (r *Conn) ClosedSilently() bool {
	r.NC.SetReadDeadline(time.Now().Add(ClosedDeadline))
	_, err := r.BR.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}
