package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testCodecs(t testing.TB) map[string]*codec {
	plain, err := newCodec(nil, "00112233445566778899aabbccddeeff", testChunk)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := newCodec(bytes.Repeat([]byte{7}, 32), "00112233445566778899aabbccddeeff", testChunk)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*codec{"Plain": plain, "Encrypted": enc}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for name, c := range testCodecs(t) {
		t.Run(name, func(t *testing.T) {
			for _, plain := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte("abc"), 10000), randomData(1, 5000)} {
				for _, compress := range []bool{false, true} {
					obj := c.encode(nil, magicManifest, "snapshots/k", plain, compress, nil)
					got, err := c.decode(magicManifest, "snapshots/k", bytes.Clone(obj), maxMetaSize, nil)
					if err != nil || !bytes.Equal(got, plain) {
						t.Fatalf("round trip of %d bytes (compress %v): %v", len(plain), compress, err)
					}
					if compress && len(plain) == 30000 && obj[5]&flagZstd == 0 {
						t.Error("compressible body not compressed")
					}
					// Another kind, another key, a limit too small: all refused.
					if _, err := c.decode(magicChunk, "snapshots/k", bytes.Clone(obj), maxMetaSize, nil); !errors.Is(err, ErrCorrupt) {
						t.Errorf("decoded as another kind: %v", err)
					}
					if c.aead != nil {
						if _, err := c.decode(magicManifest, "snapshots/other", bytes.Clone(obj), maxMetaSize, nil); !errors.Is(err, ErrCorrupt) {
							t.Errorf("decoded under another key: %v", err)
						}
					}
					if len(plain) > 1 {
						if _, err := c.decode(magicManifest, "snapshots/k", bytes.Clone(obj), len(plain)-1, nil); !errors.Is(err, ErrCorrupt) {
							t.Errorf("decoded past the limit: %v", err)
						}
					}
				}
			}
		})
	}
	cs := testCodecs(t)
	obj := cs["Plain"].encode(nil, magicChunk, "k", []byte("data"), false, nil)
	if _, err := cs["Encrypted"].decode(magicChunk, "k", obj, 100, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unencrypted object accepted by an encrypted repository: %v", err)
	}
	obj = cs["Encrypted"].encode(nil, magicChunk, "k", []byte("data"), false, nil)
	if _, err := cs["Plain"].decode(magicChunk, "k", obj, 100, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("encrypted object accepted by a plain repository: %v", err)
	}
	newer := bytes.Clone(obj)
	newer[4] = 2
	newer = appendCRC(newer[:len(newer)-crcLen])
	if _, err := cs["Encrypted"].decode(magicChunk, "k", newer, 100, nil); !errors.Is(err, ErrVersion) {
		t.Errorf("newer envelope: %v, want ErrVersion", err)
	}
}

func TestChunkIDs(t *testing.T) {
	cs := testCodecs(t)
	p := []byte("some chunk")
	a, b := cs["Plain"].chunkID(p), cs["Encrypted"].chunkID(p)
	if a == b || a.IsNull() || b.IsNull() {
		t.Fatalf("ids %s %s", a, b)
	}
	id, err := ParseID(a.String())
	if err != nil || id != a {
		t.Fatalf("ParseID(String) = %s, %v", id, err)
	}
	for _, s := range []string{"", "xyz", strings.ToUpper(a.String()), a.String()[:63]} {
		if _, err := ParseID(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseID(%q) = %v", s, err)
		}
	}
	if got, ok := parsePackKey(packKey(a)); !ok || got != a {
		t.Fatalf("parsePackKey(packKey) = %s, %v", got, ok)
	}
	if got, ok := parseIndexKey(indexKey(a)); !ok || got != a {
		t.Fatalf("parseIndexKey(indexKey) = %s, %v", got, ok)
	}
	for _, k := range []string{"packs/" + a.String(), "packs/zz/" + a.String(), "packs/" + a.String()[:2] + "/" + a.String()[:63],
		chunkKey(a), "index/" + a.String()[:2] + "/" + a.String(), "config"} {
		if _, ok := parsePackKey(k); ok {
			t.Errorf("parsePackKey(%q) accepted", k)
		}
		if _, ok := parseIndexKey(k); ok {
			t.Errorf("parseIndexKey(%q) accepted", k)
		}
	}
	bid := newBackupID(time.Date(2026, 11, 24, 23, 12, 36, 0, time.UTC))
	if !validBackupID(bid) || !strings.HasPrefix(bid, "20261124-231236-") {
		t.Fatalf("backup id %q", bid)
	}
	for _, s := range []string{"", "20261124-231236-1a2b3c4", "20261124-231236-1A2B3C4D", "20261124_231236-1a2b3c4d", "2026112a-231236-1a2b3c4d"} {
		if validBackupID(s) {
			t.Errorf("validBackupID(%q)", s)
		}
	}
}

func testConfig() *Config {
	return &Config{Format: formatName, Version: FormatVersion, ID: "00112233445566778899aabbccddeeff",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), ChunkSize: DefaultChunkSize, PackSize: DefaultPackSize}
}

func TestConfigRoundTrip(t *testing.T) {
	c := testConfig()
	e, _, err := newEncryption([]byte("pw"), testKDF, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []*Encryption{nil, e} {
		c.Encryption = enc
		obj, err := encodeConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeConfig(obj)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("config round trip: %+v, %v", got, err)
		}
	}
	// A newer version (with a field this build does not know) is ErrVersion,
	// an unknown field in this version ErrCorrupt, a bad chunk size ErrCorrupt.
	for _, tc := range []struct {
		edit func(m map[string]any)
		want error
	}{
		{func(m map[string]any) { m["version"] = 3; m["shards"] = true }, ErrVersion},
		{func(m map[string]any) { m["version"] = 1; delete(m, "pack_size") }, ErrVersion}, // the development format
		{func(m map[string]any) { m["version"] = 0 }, ErrCorrupt},
		{func(m map[string]any) { m["shards"] = true }, ErrCorrupt},
		{func(m map[string]any) { m["pack_size"] = 100 }, ErrCorrupt},
		{func(m map[string]any) { m["chunk_size"] = 8 << 20 }, ErrCorrupt},
		{func(m map[string]any) { m["chunk_size"] = 1000 }, ErrCorrupt},
		{func(m map[string]any) { m["format"] = "restic" }, ErrNotRepo},
		{func(m map[string]any) { m["id"] = "xyz" }, ErrCorrupt},
	} {
		c.Encryption = nil
		js, _ := json.Marshal(c)
		var m map[string]any
		json.Unmarshal(js, &m)
		tc.edit(m)
		js, _ = json.Marshal(m)
		obj := appendCRC(append(appendHeader(nil, magicConfig, 0, len(js)), js...))
		if _, err := DecodeConfig(obj); !errors.Is(err, tc.want) {
			t.Errorf("config %s: %v, want %v", js, err, tc.want)
		}
	}
}

func TestKeyWrap(t *testing.T) {
	e, master, err := newEncryption([]byte("pw"), testKDF, "id1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.unwrap([]byte("pw"), "id1")
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := e.unwrap([]byte("pw2"), "id1"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := e.unwrap([]byte("pw"), "id2"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("key of another repository: %v", err)
	}
	if _, _, err := newEncryption([]byte("pw"), KDFParams{Time: 1, MemoryKiB: 1, Threads: 1}, "id"); !errors.Is(err, ErrInvalid) {
		t.Errorf("tiny KDF memory: %v", err)
	}
}

func testManifest() *Manifest {
	v1 := &Volume{Name: "vm1-disk0", Size: 3*testChunk + 5, ChunkSize: testChunk, Meta: map[string]string{"gen": "3"},
		Chunks: []ID{{1}, {}, {2}, {1}}}
	v2 := &Volume{Name: "empty", Size: 0, ChunkSize: testChunk, Chunks: []ID{}}
	return &Manifest{ID: "20261124-231236-1a2b3c4d", Time: time.Date(2026, 11, 24, 23, 12, 36, 5, time.UTC), Host: "h",
		Group: "vm1", Tags: []string{"a"}, Volumes: []*Volume{v1, v2}, Stats: BackupStats{BytesTotal: 7, ChunksNew: 2}}
}

func TestManifestRoundTrip(t *testing.T) {
	const repoID = "00112233445566778899aabbccddeeff"
	m := testManifest()
	for name, c := range testCodecs(t) {
		body, err := encodeManifestBody(m, repoID)
		if err != nil {
			t.Fatal(err)
		}
		obj := c.encode(nil, magicManifest, manifestKey(m.ID), body, true, nil)
		got, err := c.decodeManifest(m.ID, repoID, obj)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("%s: round trip: %+v, %v", name, got, err)
		}
		if _, err := c.decodeManifest(m.ID, "ffffffffffffffffffffffffffffffff", c.encode(nil, magicManifest, manifestKey(m.ID), body, true, nil)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: manifest of another repository: %v", name, err)
		}
	}
	body, _ := encodeManifestBody(m, repoID)
	for _, tc := range []struct {
		name string
		body []byte
		want error
	}{
		{"Short", body[:3], ErrCorrupt},
		{"TruncatedIDs", body[:len(body)-1], ErrCorrupt},
		{"ExtraIDs", append(bytes.Clone(body), make([]byte, 32)...), ErrCorrupt},
		{"Newer", bytes.Replace(bytes.Clone(body), []byte(`{"v":1`), []byte(`{"v":2`), 1), ErrVersion},
		{"UnknownField", bytes.Replace(bytes.Clone(body), []byte(`"host":"h"`), []byte(`"hoss":"h"`), 1), ErrCorrupt},
		{"BadName", bytes.Replace(bytes.Clone(body), []byte(`"vm1-disk0"`), []byte(`"vm1/disk0"`), 1), ErrCorrupt},
		{"WrongCount", bytes.Replace(bytes.Clone(body), []byte(`"chunks":4`), []byte(`"chunks":3`), 1), ErrCorrupt},
	} {
		if _, err := decodeManifestBody(tc.body, m.ID, repoID); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := decodeManifestBody(body, "20261124-231236-00000000", repoID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("manifest under another id: %v", err)
	}
}

// A version 1 repository (one object per chunk, development builds only)
// is refused with ErrVersion and a message saying what to do.
func TestOpenVersion1(t *testing.T) {
	b := newLocal(t)
	js := []byte(`{"format":"extrasphere-repo","version":1,"id":"00112233445566778899aabbccddeeff",` +
		`"created":"2026-11-24T23:12:36Z","chunk_size":1048576}`)
	obj := appendCRC(append(appendHeader(nil, magicConfig, 0, len(js)), js...))
	if err := b.Put(t.Context(), configKey, obj); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), b, nil)
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 1") || !strings.Contains(err.Error(), "new repository") {
		t.Fatalf("Open of a version 1 repository: %v; want ErrVersion saying to create a new repository", err)
	}
}
