package nbd

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawConn is a deliberately naive client that can send anything, for
// testing how the server answers malformed input.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *testServer) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	r := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	var hello [18]byte
	r.read(hello[:])
	if binary.BigEndian.Uint64(hello[0:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != optMagic {
		t.Fatalf("bad greeting %x", hello)
	}
	return r
}

func (r *rawConn) read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatalf("read: %v", err)
	}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) clientFlags(f uint32) {
	r.write(binary.BigEndian.AppendUint32(nil, f))
}

func (r *rawConn) option(opt uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

// optReply reads one option reply: its type and data.
func (r *rawConn) optReply(wantOpt uint32) (uint32, []byte) {
	r.t.Helper()
	var h [20]byte
	r.read(h[:])
	if binary.BigEndian.Uint64(h[0:]) != optReplyMagic {
		r.t.Fatalf("option reply magic %x", h[:8])
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != wantOpt {
		r.t.Fatalf("reply to option %d, want %d", o, wantOpt)
	}
	data := make([]byte, binary.BigEndian.Uint32(h[16:]))
	r.read(data)
	return binary.BigEndian.Uint32(h[12:]), data
}

// finalReply reads replies to opt until a non-INFO/SERVER/META one.
func (r *rawConn) finalReply(opt uint32) uint32 {
	r.t.Helper()
	for {
		typ, _ := r.optReply(opt)
		if typ != repInfo && typ != repServer && typ != repMetaContext {
			return typ
		}
	}
}

func goPayload(name string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

// open negotiates into transmission on export, optionally with structured
// replies and base:allocation.
func (r *rawConn) open(export string, structured bool) {
	r.t.Helper()
	r.clientFlags(cflagFixedNew | cflagNoZeroes)
	if structured {
		r.option(optStructuredReply, nil)
		if typ, _ := r.optReply(optStructuredReply); typ != repAck {
			r.t.Fatalf("structured reply: %#x", typ)
		}
		r.option(optSetMetaContext, metaPayload(export, "base:allocation"))
		if typ := r.finalReply(optSetMetaContext); typ != repAck {
			r.t.Fatalf("set meta context: %#x", typ)
		}
	}
	r.option(optGo, goPayload(export))
	if typ := r.finalReply(optGo); typ != repAck {
		r.t.Fatalf("go %q: %#x", export, typ)
	}
}

func (r *rawConn) request(typ, flags uint16, handle, off uint64, length uint32, payload []byte) {
	var b [requestSize]byte
	encodeRequest(b[:], request{flags: flags, typ: typ, handle: handle, off: off, length: length})
	r.write(append(b[:], payload...))
}

// simpleReply reads a simple reply and returns handle and errno.
func (r *rawConn) simpleReply() (uint64, uint32) {
	r.t.Helper()
	var h [simpleSize]byte
	r.read(h[:])
	if binary.BigEndian.Uint32(h[0:]) != simpleMagic {
		r.t.Fatalf("simple reply magic %x", h[:4])
	}
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
}

// chunk reads one structured chunk: flags, type, handle, payload.
func (r *rawConn) chunk() (uint16, uint16, uint64, []byte) {
	r.t.Helper()
	var h [structHdrSize]byte
	r.read(h[:])
	if binary.BigEndian.Uint32(h[0:]) != structuredMagic {
		r.t.Fatalf("structured reply magic %x", h[:4])
	}
	p := make([]byte, binary.BigEndian.Uint32(h[16:]))
	r.read(p)
	return binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint64(h[8:]), p
}

// closed reports whether the server ended the connection.
func (r *rawConn) closed() bool {
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.br.ReadByte()
	return err != nil
}
