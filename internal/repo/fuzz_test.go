package repo

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// withCRC returns a copy of obj with its trailing crc32c recomputed, so
// the fuzzer's mutations reach the parsers behind the checksum.
func withCRC(obj []byte) []byte {
	if len(obj) < hdrLen+crcLen {
		return bytes.Clone(obj)
	}
	return appendCRC(bytes.Clone(obj[:len(obj)-crcLen]))
}

// FuzzDecodeConfig: no input panics; a config that decodes re-encodes to
// one that decodes the same.
func FuzzDecodeConfig(f *testing.F) {
	c := testConfig()
	obj, _ := encodeConfig(c)
	f.Add(obj)
	c.Encryption, _, _ = newEncryption([]byte("pw"), testKDF, c.ID)
	obj, _ = encodeConfig(c)
	f.Add(obj)
	f.Add([]byte("XSRK\x01\x00\x00\x00\x02\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, obj := range [][]byte{in, withCRC(in)} {
			c, err := DecodeConfig(obj)
			if err != nil {
				continue
			}
			out, err := encodeConfig(c)
			if err != nil {
				t.Fatalf("decoded config does not encode: %v", err)
			}
			c2, err := DecodeConfig(out)
			if err != nil {
				t.Fatalf("re-encoded config does not decode: %v", err)
			}
			if out2, _ := encodeConfig(c2); !bytes.Equal(out, out2) {
				t.Fatalf("round trip changed the config: %s -> %s", out, out2)
			}
		}
	})
}

// FuzzDecodeChunk: no input panics, in a plain or an encrypted
// repository; what decodes is at most the limit.
func FuzzDecodeChunk(f *testing.F) {
	cs := testCodecs(f)
	data := append(bytes.Repeat([]byte("chunk"), 1000), randomData(2, 3000)...)
	key := chunkKey(cs["Plain"].chunkID(data))
	for _, c := range cs {
		f.Add(c.encode(nil, magicChunk, key, data, true, nil), c.aead != nil)
		f.Add(c.encode(nil, magicChunk, key, data[:10], false, nil), c.aead != nil)
	}
	f.Fuzz(func(t *testing.T, in []byte, encrypted bool) {
		c := cs["Plain"]
		if encrypted {
			c = cs["Encrypted"]
		}
		for _, obj := range [][]byte{in, withCRC(in)} {
			p, err := c.decode(magicChunk, key, obj, 1<<20, nil)
			if err == nil && len(p) > 1<<20 {
				t.Fatalf("decoded %d bytes past the limit", len(p))
			}
		}
	})
}

// FuzzDecodeManifest: no object and no body panics; a manifest that
// decodes re-encodes to one that decodes the same.
func FuzzDecodeManifest(f *testing.F) {
	const repoID = "00112233445566778899aabbccddeeff"
	m := testManifest()
	body, _ := encodeManifestBody(m, repoID)
	c := testCodecs(f)["Plain"]
	key := manifestKey(m.ID)
	f.Add(body, false)
	f.Add(c.encode(nil, magicManifest, key, body, true, nil), true)
	f.Add(c.encode(nil, magicManifest, key, body, false, nil), true)
	f.Fuzz(func(t *testing.T, in []byte, object bool) {
		var objs [][]byte
		if object {
			objs = [][]byte{in, withCRC(in)}
		} else {
			objs = [][]byte{c.encode(nil, magicManifest, key, in, false, nil), c.encode(nil, magicManifest, key, in, true, nil)}
		}
		for _, obj := range objs {
			got, err := c.decodeManifest(m.ID, repoID, obj)
			sum, serr := c.parseManifest(m.ID, repoID, obj, false)
			if (err == nil) != (serr == nil) {
				t.Fatalf("full decode: %v; summary decode: %v", err, serr)
			}
			if err != nil {
				continue
			}
			if sum.ID != got.ID || sum.Stats != got.Stats || len(sum.Volumes) != len(got.Volumes) {
				t.Fatalf("summary %+v differs from the manifest %+v", sum, got)
			}
			b2, err := encodeManifestBody(got, repoID)
			if err != nil {
				t.Fatalf("decoded manifest does not encode: %v", err)
			}
			got2, err := decodeManifestBody(b2, m.ID, repoID)
			if err != nil {
				t.Fatalf("re-encoded manifest does not decode: %v", err)
			}
			if b3, _ := encodeManifestBody(got2, repoID); !bytes.Equal(b2, b3) {
				t.Fatalf("round trip changed the manifest: %q -> %q", b2, b3)
			}
		}
	})
}

// FuzzDecodeLock: no lock object panics.
func FuzzDecodeLock(f *testing.F) {
	c := testCodecs(f)["Plain"]
	f.Add(c.encode(nil, magicLock, "locks/x", []byte(`{"kind":"backup","operation":"backup","host":"h","pid":1,"time":"2026-01-01T00:00:00Z"}`), false, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, obj := range [][]byte{in, withCRC(in)} {
			c.decodeLock("locks/x", obj)
		}
	})
}

// testPackBlobs makes the blobs and entries of a small pack.
func testPackBlobs(c *codec) ([]byte, []packEntry) {
	var blobs []byte
	var entries []packEntry
	for i := range 3 {
		p := randomData(uint64(30+i), 1000+i)
		id := c.chunkID(p)
		off := len(blobs)
		blobs = c.encode(blobs, magicChunk, chunkKey(id), p, true, nil)
		entries = append(entries, packEntry{ID: id, Off: uint32(off), Len: uint32(len(blobs) - off)})
	}
	return blobs, entries
}

// FuzzDecodePackHeader: no pack object and no header body panics; a pack
// whose header decodes describes blobs that tile it, and (unencrypted)
// rebuilding it from those blobs gives the same bytes; a body that parses
// re-encodes to itself.
func FuzzDecodePackHeader(f *testing.F) {
	cs := testCodecs(f)
	for _, c := range cs {
		blobs, entries := testPackBlobs(c)
		f.Add(c.finishPack(bytes.Clone(blobs), entries), c.aead != nil, false, int64(0))
		body := binary.LittleEndian.AppendUint32(nil, uint32(len(entries)))
		f.Add(appendEntries(body, entries), false, true, int64(len(blobs)))
	}
	f.Add([]byte("XSRP\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00"), false, false, int64(0))
	f.Fuzz(func(t *testing.T, in []byte, encrypted, body bool, end int64) {
		c := cs["Plain"]
		if encrypted {
			c = cs["Encrypted"]
		}
		if body {
			entries, err := parsePackEntries(in, end)
			if err != nil {
				return
			}
			out := appendEntries(binary.LittleEndian.AppendUint32(nil, uint32(len(entries))), entries)
			if !bytes.Equal(out, in) {
				t.Fatalf("pack header body round trip changed it")
			}
			return
		}
		for _, obj := range [][]byte{in, withPackCRC(in)} {
			entries, err := c.decodePackObject(obj)
			if err != nil {
				continue
			}
			hdrStart := entries[len(entries)-1].end()
			if hdrStart > int64(len(obj)) {
				t.Fatalf("entries end at %d past the pack's %d bytes", hdrStart, len(obj))
			}
			if c.aead == nil {
				if again := c.finishPack(bytes.Clone(obj[:hdrStart]), entries); !bytes.Equal(again, obj) {
					t.Fatalf("rebuilt pack differs from the decoded one")
				}
			}
		}
	})
}

// withPackCRC recomputes the crc of the header a pack's footer points
// at, so mutations reach the entry parser.
func withPackCRC(obj []byte) []byte {
	if len(obj) < packFooterLen+minBlobLen {
		return obj
	}
	off, n, err := packHeaderSpan(obj[len(obj)-packFooterLen:], int64(len(obj)))
	if err != nil {
		return obj
	}
	out := bytes.Clone(obj)
	hdr := out[off : off+n]
	binary.LittleEndian.PutUint32(hdr[len(hdr)-crcLen:], crc32.Checksum(hdr[:len(hdr)-crcLen], castagnoli))
	return out
}

// FuzzDecodeIndex: no index object and no index body panics; a body that
// decodes re-encodes to itself.
func FuzzDecodeIndex(f *testing.F) {
	cs := testCodecs(f)
	_, entries := testPackBlobs(cs["Plain"])
	packs := []indexPack{{ID: ID{1}, Entries: entries}, {ID: ID{2}, Entries: entries[1:]}}
	body := encodeIndexBody(packs)
	f.Add(body, false, false)
	for _, c := range cs {
		f.Add(c.encode(nil, magicIndex, indexName, body, true, nil), true, c.aead != nil)
		f.Add(c.encode(nil, magicIndex, indexName, body, false, nil), true, c.aead != nil)
	}
	f.Fuzz(func(t *testing.T, in []byte, object, encrypted bool) {
		c := cs["Plain"]
		if encrypted {
			c = cs["Encrypted"]
		}
		if object {
			for _, obj := range [][]byte{in, withCRC(in)} {
				c.decodeIndex(contentID(obj), bytes.Clone(obj))
			}
			return
		}
		packs, err := decodeIndexBody(in)
		if err != nil {
			return
		}
		if out := encodeIndexBody(packs); !bytes.Equal(out, in) {
			t.Fatalf("index body round trip changed it")
		}
	})
}
