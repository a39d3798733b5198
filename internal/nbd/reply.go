package nbd

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// reply is one encoded reply: a header and optional payload that the writer
// sends back to back. buf, when set, goes back to the pool after sending;
// owner, when set, gets tk back then (a READ's data is budgeted until it
// left, see budget.go).
type reply struct {
	hdr   [32]byte
	hlen  int
	data  []byte
	buf   []byte
	pool  *bufPool
	owner *transmission
	tk    ticket
}

var replyPool = sync.Pool{New: func() any { return new(reply) }}

func newReply() *reply { return replyPool.Get().(*reply) }

func (r *reply) free() {
	if r.buf != nil && r.pool != nil {
		r.pool.put(r.buf)
	}
	if r.owner != nil {
		r.owner.release(r.tk)
	}
	*r = reply{}
	replyPool.Put(r)
}

// simple fills a simple reply header.
func (r *reply) simple(handle uint64, errno uint32) {
	binary.BigEndian.PutUint32(r.hdr[0:], simpleMagic)
	binary.BigEndian.PutUint32(r.hdr[4:], errno)
	binary.BigEndian.PutUint64(r.hdr[8:], handle)
	r.hlen = simpleSize
}

// chunk fills a structured reply chunk header; extra is appended to the
// header (for example the 8-byte offset of OFFSET_DATA).
func (r *reply) chunk(handle uint64, flags, typ uint16, payloadLen int, extra []byte) {
	binary.BigEndian.PutUint32(r.hdr[0:], structuredMagic)
	binary.BigEndian.PutUint16(r.hdr[4:], flags)
	binary.BigEndian.PutUint16(r.hdr[6:], typ)
	binary.BigEndian.PutUint64(r.hdr[8:], handle)
	binary.BigEndian.PutUint32(r.hdr[16:], uint32(len(extra)+payloadLen))
	r.hlen = structHdrSize + copy(r.hdr[structHdrSize:], extra)
}

// bufPool recycles payload buffers in power-of-two classes from 4 KiB to
// MaxPayload, so steady-state I/O allocates nothing.
type bufPool struct {
	classes [numBufClasses]sync.Pool // 4 KiB << i
}

const (
	minBufShift   = 12
	numBufClasses = 14 // 4 KiB to MaxPayload (32 MiB)
)

func newBufPool() *bufPool { return &bufPool{} }

func classOf(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// bufClassSize is the memory bufPool.get(n) really hands out.
func bufClassSize(n int) int64 {
	c := classOf(n)
	if c >= numBufClasses {
		return int64(n)
	}
	return 1 << (c + minBufShift)
}

func (p *bufPool) get(n int) []byte {
	c := classOf(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

func (p *bufPool) put(b []byte) {
	c := classOf(cap(b))
	if c >= len(p.classes) || cap(b) != 1<<(c+minBufShift) {
		return
	}
	b = b[:cap(b)]
	p.classes[c].Put(&b)
}
