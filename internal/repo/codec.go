package repo

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/zstd"
)

// Size bounds of decoded bodies: a decoder never allocates past them
// whatever the input claims.
const (
	maxChunkSize = 4 << 20  // largest chunk size a config may set
	maxMetaSize  = 1 << 30  // largest manifest or index body
	maxSmallSize = 64 << 10 // config and lock bodies
)

// codec turns plaintext into objects and back: zstd, optional AES-256-GCM,
// the envelope, and chunk ids. It holds one zstd encoder and two decoders
// that every goroutine shares (their EncodeAll/DecodeAll are safe for
// concurrent use); it is immutable after newCodec.
type codec struct {
	enc      *zstd.Encoder
	chunkDec *zstd.Decoder // output bounded by maxChunkSize
	metaDec  *zstd.Decoder // output bounded by maxMetaSize
	aead     cipher.AEAD   // nil when the repository is not encrypted
	idKey    []byte        // HMAC-SHA256 key of chunk ids; nil: plain SHA-256
}

// HKDF labels of the subkeys derived from the master key: must not change.
const (
	labelData = "extrasphere-repo v1 data key"
	labelID   = "extrasphere-repo v1 chunk id key"
)

// newCodec builds the codec of a repository. master is the 32-byte master
// key of an encrypted repository, nil for an unencrypted one; repoID
// salts the subkey derivation; chunkSize is the repository's.
//
// Memory: every object is compressed on its own (EncodeAll), so a match
// can never reach further back than the object's start, and a window
// larger than a chunk buys nothing for chunks (metadata objects are
// lists of random ids). The encoder's window is therefore the chunk size
// rounded up to a power of two, and it keeps a history of about that per
// pooled encoder instead of zstd's default 8 MiB window (16 MiB each):
// the codec lives as long as the daemon keeps the repository open. The
// decoders keep their buffers small between calls (low-memory mode).
func newCodec(master []byte, repoID string, chunkSize int) (*codec, error) {
	c := &codec{}
	if master != nil {
		dataKey, err := hkdf.Key(sha256.New, master, []byte(repoID), labelData, 32)
		if err != nil {
			return nil, fmt.Errorf("derive data key: %w", err)
		}
		if c.idKey, err = hkdf.Key(sha256.New, master, []byte(repoID), labelID, 32); err != nil {
			return nil, fmt.Errorf("derive id key: %w", err)
		}
		if c.aead, err = newAEAD(dataKey); err != nil {
			return nil, fmt.Errorf("data cipher: %w", err)
		}
	}
	var err error
	c.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(encoderWindow(chunkSize)), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	c.chunkDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxChunkSize), zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		c.enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	c.metaDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxMetaSize), zstd.WithDecoderConcurrency(2),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		c.enc.Close()
		c.chunkDec.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return c, nil
}

// encoderWindow is the smallest power of two zstd accepts as a window
// that holds a whole chunk of chunkSize bytes.
func encoderWindow(chunkSize int) int {
	w := zstd.MinWindowSize
	for w < chunkSize && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

func (c *codec) close() {
	c.enc.Close()
	c.chunkDec.Close()
	c.metaDec.Close()
}

// chunkID is the id of a chunk's plaintext.
func (c *codec) chunkID(p []byte) ID {
	if c.idKey == nil {
		return sha256.Sum256(p)
	}
	m := hmac.New(sha256.New, c.idKey)
	m.Write(p)
	var id ID
	m.Sum(id[:0])
	return id
}

// additionalData is what GCM authenticates besides the body: the header
// and the object key.
func additionalData(header []byte, key string) []byte {
	ad := make([]byte, 0, len(header)+len(key))
	return append(append(ad, header...), key...)
}

// encode appends the object holding plain under key to dst (the crc
// covers only what it appends). With
// compress, the body is zstd-compressed when that makes it smaller.
// scratch is a reusable buffer for the compressed form.
func (c *codec) encode(dst []byte, magic, key string, plain []byte, compress bool, scratch *[]byte) []byte {
	var flags byte
	body := plain
	if compress && len(plain) > 0 {
		var tmp []byte
		if scratch != nil {
			tmp = (*scratch)[:0]
		}
		z := c.enc.EncodeAll(plain, tmp)
		if scratch != nil {
			*scratch = z
		}
		if len(z) < len(plain) {
			body, flags = z, flagZstd
		}
	}
	if c.aead != nil {
		flags |= flagAESGCM
	}
	start := len(dst)
	dst = appendHeader(dst, magic, flags, len(plain))
	if c.aead != nil {
		dst = seal(c.aead, dst, body, additionalData(dst[start:start+hdrLen], key))
	} else {
		dst = append(dst, body...)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decode checks and opens an object of kind magic stored under key and
// returns its plaintext (at most maxPlain bytes). The result may alias obj
// or dst, and decryption happens in place: obj is overwritten. Every
// failure wraps ErrCorrupt (or ErrVersion for a newer envelope).
func (c *codec) decode(magic, key string, obj []byte, maxPlain int, dst []byte) ([]byte, error) {
	e, err := parseEnvelope(magic, obj)
	if err != nil {
		return nil, err
	}
	if e.plainLen > maxPlain {
		return nil, fmt.Errorf("plaintext length %d over the limit %d: %w", e.plainLen, maxPlain, ErrCorrupt)
	}
	body := e.payload
	switch enc := e.flags&flagAESGCM != 0; {
	case enc && c.aead == nil:
		return nil, fmt.Errorf("object is encrypted but the repository is not: %w", ErrCorrupt)
	case !enc && c.aead != nil:
		return nil, fmt.Errorf("object is not encrypted in an encrypted repository: %w", ErrCorrupt)
	case enc:
		if len(body) < nonceLen+tagLen {
			return nil, fmt.Errorf("sealed payload of %d bytes is too short: %w", len(body), ErrCorrupt)
		}
		ad := additionalData(e.header, key)
		if body, err = unseal(c.aead, body[nonceLen:nonceLen], body, ad); err != nil {
			return nil, err
		}
	}
	if e.flags&flagZstd == 0 {
		if len(body) != e.plainLen {
			return nil, fmt.Errorf("body of %d bytes, header says %d: %w", len(body), e.plainLen, ErrCorrupt)
		}
		return body, nil
	}
	dec := c.metaDec
	if magic == magicChunk {
		dec = c.chunkDec
	}
	out, err := dec.DecodeAll(body, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("decompress: %v: %w", err, ErrCorrupt)
	}
	if len(out) != e.plainLen {
		return nil, fmt.Errorf("decompressed to %d bytes, header says %d: %w", len(out), e.plainLen, ErrCorrupt)
	}
	return out, nil
}
