package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// handle runs one validated request on the device and queues its reply.
// payload is the write data (owned by handle, returned to the pool). It
// reports whether it handed tk to the reply (see dispatch).
func (t *transmission) handle(req request, payload []byte, tk ticket) bool {
	ctx := t.c.ctx
	off := int64(req.off)
	n := int64(req.length)
	var err error
	switch req.typ {
	case cmdRead:
		return t.read(req, tk)
	case cmdBlockStatus:
		t.blockStatus(req)
		return false
	case cmdWrite:
		err = t.dev.WriteAt(ctx, payload, off, fuaFlag(req))
		t.bufs.put(payload)
	case cmdFlush:
		err = t.dev.Flush(ctx)
	case cmdTrim:
		err = t.dev.Trim(ctx, off, n, fuaFlag(req))
	case cmdWriteZeroes:
		f := fuaFlag(req)
		if req.flags&cmdFlagNoHole != 0 {
			f |= blockdev.NoHole
		}
		if req.flags&cmdFlagFastZero != 0 {
			f |= blockdev.FastZero
		}
		err = t.dev.WriteZeroes(ctx, off, n, f)
	case cmdCache:
		err = t.cache(off, n)
	default:
		err = fmt.Errorf("command %d: %w", req.typ, blockdev.ErrNotSupported)
	}
	if err != nil {
		t.logErr(req, err)
		t.sendError(req, errnoFor(req.typ, err), err.Error())
		return false
	}
	r := newReply()
	r.simple(req.handle, 0)
	t.send(r)
	return false
}

func fuaFlag(req request) blockdev.WriteFlags {
	if req.flags&cmdFlagFUA != 0 {
		return blockdev.FUA
	}
	return 0
}

// read sends the data only once all of it is in hand. The reply takes tk:
// the data stays budgeted until it was written.
func (t *transmission) read(req request, tk ticket) bool {
	buf := t.bufs.get(int(req.length))
	if err := t.dev.ReadAt(t.c.ctx, buf, int64(req.off)); err != nil {
		t.bufs.put(buf)
		t.logErr(req, err)
		t.sendError(req, errnoFor(req.typ, err), err.Error())
		return false
	}
	r := newReply()
	if t.sess.structured {
		var off [8]byte
		binary.BigEndian.PutUint64(off[:], req.off)
		r.chunk(req.handle, chunkFlagDone, chunkOffsetData, len(buf), off[:])
	} else {
		r.simple(req.handle, 0)
	}
	r.data, r.buf, r.pool = buf, buf, t.bufs
	r.owner, r.tk = t, tk
	t.send(r)
	return true
}

// cache reads the range through the whole stack, warming every layer,
// through one buffer of at most cacheStep (what its ticket counts).
func (t *transmission) cache(off, n int64) error {
	buf := t.bufs.get(int(min(n, cacheStep)))
	defer t.bufs.put(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if err := t.dev.ReadAt(t.c.ctx, buf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// blockStatus answers one chunk per selected meta context.
func (t *transmission) blockStatus(req request) {
	var chunks [][]byte
	for _, m := range t.meta {
		ext, err := t.dev.BlockStatus(t.c.ctx, m.name, int64(req.off), int64(req.length))
		if err == nil && len(ext) == 0 {
			err = fmt.Errorf("block status %s: device returned no extent: %w", m.name, errNoExtents)
		}
		if err != nil {
			t.logErr(req, err)
			t.sendError(req, errnoFor(req.typ, err), err.Error())
			return
		}
		chunks = append(chunks, encodeExtents(m.id, ext, uint64(req.length), req.flags&cmdFlagReqOne != 0, t.sess.minBlock))
	}
	for i, p := range chunks {
		r := newReply()
		var flags uint16
		if i == len(chunks)-1 {
			flags = chunkFlagDone
		}
		r.chunk(req.handle, flags, chunkBlockStatus, len(p), nil)
		r.data = p
		t.send(r)
	}
}

var errNoExtents = errors.New("no extents")

// encodeExtents builds a BLOCK_STATUS chunk payload: u32 context id, then
// (u32 length, u32 flags) pairs covering at most length bytes, at most
// maxStatusExtents of them (the client asks again for the rest). Extents
// longer than a u32 are split on minBlock boundaries.
func encodeExtents(id uint32, ext []blockdev.Extent, length uint64, one bool, minBlock uint32) []byte {
	p := binary.BigEndian.AppendUint32(make([]byte, 0, 4+8*min(len(ext), 64)), id)
	maxLen := uint64(math.MaxUint32) / uint64(minBlock) * uint64(minBlock)
	var done uint64
	for _, e := range ext {
		left := min(uint64(max(e.Length, 0)), length-done)
		for left > 0 {
			k := min(left, maxLen)
			p = binary.BigEndian.AppendUint32(p, uint32(k))
			p = binary.BigEndian.AppendUint32(p, e.Flags)
			done, left = done+k, left-k
			if one || len(p) >= 4+8*maxStatusExtents {
				return p
			}
		}
		if done >= length {
			break
		}
	}
	return p
}

// sendError queues an error reply of the right kind for the request.
func (t *transmission) sendError(req request, errno uint32, msg string) {
	r := newReply()
	structured := t.sess.structured && (req.typ == cmdRead || req.typ == cmdBlockStatus)
	if !structured {
		r.simple(req.handle, errno)
		t.send(r)
		return
	}
	if len(msg) > maxStringLen {
		msg = msg[:maxStringLen]
	}
	var e [6]byte
	binary.BigEndian.PutUint32(e[0:], errno)
	binary.BigEndian.PutUint16(e[4:], uint16(len(msg)))
	r.chunk(req.handle, chunkFlagDone, chunkError, len(msg), e[:])
	r.data = []byte(msg)
	t.send(r)
}

func (t *transmission) logErr(req request, err error) {
	t.c.log.Warn("nbd request failed", "cmd", req.typ, "offset", req.off, "length", req.length, "err", err)
}
