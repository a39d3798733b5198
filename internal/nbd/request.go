package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errBadMagic: the stream is out of step; the protocol has no way to
// resynchronise, so the connection ends.
var errBadMagic = errors.New("bad request magic")

// request is one decoded transmission request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	off    uint64
	length uint32
}

// decodeRequest parses a 28-byte request header.
func decodeRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("request header of %d bytes: %w", len(b), errBadMagic)
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != requestMagic {
		return request{}, fmt.Errorf("magic %#x: %w", m, errBadMagic)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:6]),
		typ:    binary.BigEndian.Uint16(b[6:8]),
		handle: binary.BigEndian.Uint64(b[8:16]),
		off:    binary.BigEndian.Uint64(b[16:24]),
		length: binary.BigEndian.Uint32(b[24:28]),
	}, nil
}

// encodeRequest is decodeRequest's inverse (the client uses it).
func encodeRequest(b []byte, r request) {
	binary.BigEndian.PutUint32(b[0:4], requestMagic)
	binary.BigEndian.PutUint16(b[4:6], r.flags)
	binary.BigEndian.PutUint16(b[6:8], r.typ)
	binary.BigEndian.PutUint64(b[8:16], r.handle)
	binary.BigEndian.PutUint64(b[16:24], r.off)
	binary.BigEndian.PutUint32(b[24:28], r.length)
}

// session is what validateRequest needs to know about the connection.
type session struct {
	size       uint64
	readOnly   bool
	structured bool
	minBlock   uint32
	maxPayload uint32
	haveMeta   bool // at least one meta context selected
}

// allowedFlags lists the command flags each command accepts.
var allowedFlags = [...]uint16{
	cmdRead:        cmdFlagDF,
	cmdWrite:       cmdFlagFUA,
	cmdDisc:        0,
	cmdFlush:       0,
	cmdTrim:        cmdFlagFUA,
	cmdCache:       0,
	cmdWriteZeroes: cmdFlagFUA | cmdFlagNoHole | cmdFlagFastZero,
	cmdBlockStatus: cmdFlagReqOne,
}

// validateRequest checks a request against the session before any I/O and
// returns the NBD errno to reply with, or 0. It is pure, and fuzzed.
func validateRequest(r request, s session) uint32 {
	if int(r.typ) >= len(allowedFlags) {
		return eINVAL
	}
	if r.flags&^allowedFlags[r.typ] != 0 {
		return eINVAL
	}
	if r.flags&cmdFlagDF != 0 && !s.structured {
		return eINVAL
	}
	switch r.typ {
	case cmdDisc:
		return 0
	case cmdFlush:
		if r.off != 0 || r.length != 0 {
			return eINVAL
		}
		return 0
	case cmdRead, cmdWrite:
		if r.length > s.maxPayload {
			return eINVAL // the spec keeps EOVERFLOW for DF reads and payload-less commands
		}
	case cmdBlockStatus:
		if !s.structured || !s.haveMeta {
			return eINVAL
		}
	}
	if r.length == 0 && r.typ != cmdCache {
		return eINVAL
	}
	end := r.off + uint64(r.length)
	if end < r.off || end > s.size {
		if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
			return eNOSPC
		}
		return eINVAL
	}
	if s.minBlock > 1 && (r.off%uint64(s.minBlock) != 0 || uint64(r.length)%uint64(s.minBlock) != 0) {
		return eINVAL
	}
	if s.readOnly && (r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes) {
		return ePERM
	}
	return 0
}
