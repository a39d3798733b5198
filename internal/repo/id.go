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
// stands for an all-zero chunk, which is never stored.
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
	chunkPrefix    = "chunks/"
	manifestPrefix = "snapshots/"
	lockPrefix     = "locks/"
)

// chunkKey is chunks/<first 2 hex>/<64 hex>.
func chunkKey(id ID) string {
	h := id.String()
	return chunkPrefix + h[:2] + "/" + h
}

// parseChunkKey inverts chunkKey; ok is false for any other key.
func parseChunkKey(key string) (ID, bool) {
	rest, ok := strings.CutPrefix(key, chunkPrefix)
	if !ok || len(rest) != 2+1+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return ID{}, false
	}
	id, err := ParseID(rest[3:])
	return id, err == nil && !id.IsNull()
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
