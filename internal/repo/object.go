package repo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Every object the repository writes, and every chunk blob inside a pack,
// is one envelope (docs/FORMATS.md section 6):
//
//	0   [4] magic: "XSRK" config, "XSRC" chunk, "XSRM" manifest, "XSRL" lock,
//	        "XSRP" pack header, "XSRI" index (must not change)
//	4   u8  version = 1                                               (must not change)
//	5   u8  flags: bit 0 zstd-compressed, bit 1 AES-256-GCM; others 0
//	6   u16 zero
//	8   u32 plaintext length (after decryption and decompression)
//	12      payload: the body (zstd frame if bit 0), or if bit 1
//	        nonce[12] || AES-256-GCM seal of it, additional data = bytes 0..11 || name
//	end [4] crc32c (Castagnoli) of the envelope's bytes before it
//
// Little-endian. The crc catches media errors cheaply and before any
// decryption; the GCM tag authenticates the body and binds it to its name:
// the object key, or chunkKey(id) for a chunk blob (a chunk put where
// another belongs, or a manifest under another name, fails).
const (
	magicConfig   = "XSRK" // must not change
	magicChunk    = "XSRC" // must not change
	magicManifest = "XSRM" // must not change
	magicLock     = "XSRL" // must not change
	magicPack     = "XSRP" // pack header: must not change
	magicIndex    = "XSRI" // index object: must not change

	objVersion = 1 // envelope version: must not change for this layout
	hdrLen     = 12
	crcLen     = 4
	nonceLen   = 12
	tagLen     = 16

	flagZstd   = 1 << 0
	flagAESGCM = 1 << 1
	flagsKnown = flagZstd | flagAESGCM
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadMagic: the object is not of the expected kind (wraps ErrCorrupt;
// Open maps it to ErrNotRepo for the config).
var errBadMagic = fmt.Errorf("bad magic: %w", ErrCorrupt)

// errNewerObject: the envelope version is not ours (wraps ErrVersion).
var errNewerObject = fmt.Errorf("object format version: %w", ErrVersion)

// envelope is a parsed, crc-checked object.
type envelope struct {
	flags    byte
	plainLen int
	header   []byte // bytes 0..11 (additional data for GCM)
	payload  []byte
}

// parseEnvelope checks magic, version, flags and crc. It never allocates.
func parseEnvelope(magic string, obj []byte) (envelope, error) {
	var e envelope
	if len(obj) < hdrLen+crcLen {
		return e, fmt.Errorf("object of %d bytes is too short: %w", len(obj), ErrCorrupt)
	}
	if string(obj[:4]) != magic {
		return e, errBadMagic
	}
	body, sum := obj[:len(obj)-crcLen], binary.LittleEndian.Uint32(obj[len(obj)-crcLen:])
	if crc32.Checksum(body, castagnoli) != sum {
		return e, fmt.Errorf("crc32c mismatch: %w", ErrCorrupt)
	}
	if obj[4] != objVersion {
		return e, fmt.Errorf("%w %d", errNewerObject, obj[4])
	}
	if obj[5]&^flagsKnown != 0 || obj[6] != 0 || obj[7] != 0 {
		return e, fmt.Errorf("unknown flags %#x%02x%02x: %w", obj[5], obj[6], obj[7], ErrCorrupt)
	}
	e.flags = obj[5]
	e.plainLen = int(binary.LittleEndian.Uint32(obj[8:12]))
	e.header = obj[:hdrLen]
	e.payload = body[hdrLen:]
	return e, nil
}

// appendHeader appends the 12-byte header.
func appendHeader(dst []byte, magic string, flags byte, plainLen int) []byte {
	dst = append(dst, magic...)
	dst = append(dst, objVersion, flags, 0, 0)
	return binary.LittleEndian.AppendUint32(dst, uint32(plainLen))
}

// appendCRC appends the crc32c of obj.
func appendCRC(obj []byte) []byte {
	return binary.LittleEndian.AppendUint32(obj, crc32.Checksum(obj, castagnoli))
}

// newAEAD makes AES-256-GCM over a 32-byte key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain into dst (nonce || ciphertext || tag).
func seal(aead cipher.AEAD, dst, plain, ad []byte) []byte {
	var nonce [nonceLen]byte
	rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plain, ad)
}

// errAuth: a GCM tag did not verify.
var errAuth = errors.New("authentication failed (the object was altered or written with another key)")

// unseal decrypts nonce || ciphertext || tag into dst.
func unseal(aead cipher.AEAD, dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < nonceLen+tagLen {
		return nil, fmt.Errorf("sealed payload of %d bytes is too short: %w", len(sealed), ErrCorrupt)
	}
	out, err := aead.Open(dst, sealed[:nonceLen], sealed[nonceLen:], ad)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", errAuth, ErrCorrupt)
	}
	return out, nil
}
