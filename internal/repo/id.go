package repo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// ID identifies a chunk: the SHA-256 of its plaintext, or in an encrypted
// repository the HMAC-SHA256 of the plaintext under the repository's id
// key (so ids do not reveal contents). The zero ID is the null id: it
// stands for an all-zero chunk, which is never stored. Packs and index
// objects are named by an ID too: the SHA-256 of their bytes.
type ID [32]byte

// IsNull reports whether id is the null id (an all-zero chunk).
func (id ID) IsNull() bool { return id == ID{} }

// String is the id in lowercase hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses 64 lowercase hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 || strings.ToLower(s) != s {
		return id, fmt.Errorf("chunk id %q: want 64 lowercase hex digits: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk id %q: %w", s, ErrInvalid)
	}
	return id, nil
}

// Object keys (backend package comment: [a-z0-9._-] segments).
const (
	configKey      = "config"
	packPrefix     = "packs/"
	indexPrefix    = "index/"
	manifestPrefix = "snapshots/"
	lockPrefix     = "locks/"
)

// chunkKey is the name a chunk's blob is sealed under (the GCM additional
// data binds the blob to its id, wherever it is packed):
// "chunks/<first 2 hex>/<64 hex>". No object has this key.
func chunkKey(id ID) string {
	h := id.String()
	return "chunks/" + h[:2] + "/" + h
}

// packKey is packs/<first 2 hex>/<64 hex>; a pack's id is the SHA-256 of
// its bytes.
func packKey(id ID) string {
	h := id.String()
	return packPrefix + h[:2] + "/" + h
}

// parsePackKey inverts packKey; ok is false for any other key.
func parsePackKey(key string) (ID, bool) {
	rest, ok := strings.CutPrefix(key, packPrefix)
	if !ok || len(rest) != 2+1+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return ID{}, false
	}
	id, err := ParseID(rest[3:])
	return id, err == nil
}

// indexKey is index/<64 hex>; an index object's id is the SHA-256 of its
// bytes.
func indexKey(id ID) string { return indexPrefix + id.String() }

// parseIndexKey inverts indexKey; ok is false for any other key.
func parseIndexKey(key string) (ID, bool) {
	rest, ok := strings.CutPrefix(key, indexPrefix)
	if !ok {
		return ID{}, false
	}
	id, err := ParseID(rest)
	return id, err == nil
}

// backupIDLen is len("20261124-231236-1a2b3c4d").
const backupIDLen = 8 + 1 + 6 + 1 + 8

// newBackupID makes a backup (manifest) id: the UTC time to the second,
// then 32 random bits, so ids sort by time and two backups started in the
// same second by different hosts still differ.
func newBackupID(t time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return t.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

// validBackupID checks the form newBackupID makes.
func validBackupID(s string) bool {
	if len(s) != backupIDLen || s[8] != '-' || s[15] != '-' {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 15:
		case i < 15 && c >= '0' && c <= '9':
		case i > 15 && (c >= '0' && c <= '9' || c >= 'a' && c <= 'f'):
		default:
			return false
		}
	}
	return true
}

func manifestKey(id string) string { return manifestPrefix + id }

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
