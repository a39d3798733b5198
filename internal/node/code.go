package node

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// secretBytes is the pairing secret's entropy.
const secretBytes = 16

// secretEncoding encodes the secret: RFC 4648 base32 without padding (26
// characters for 16 bytes), easy to read aloud and type.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pairing secret: %w", err)
	}
	return secretEncoding.EncodeToString(b), nil
}

// checkSecret checks a secret's form (not its value).
func checkSecret(s string) error {
	b, err := secretEncoding.DecodeString(s)
	if err != nil || len(b) != secretBytes {
		return fmt.Errorf("pairing secret: want %d base32 characters", secretEncoding.EncodedLen(secretBytes))
	}
	return nil
}

// ParseCode splits a pairing code "<fingerprint-hex>-<secret>" into the
// fingerprint ("SHA256:..." lowercase) and the secret (uppercase base32).
// Case and surrounding space do not matter. A malformed code wraps
// ErrBadCode.
func ParseCode(code string) (fingerprint, secret string, err error) {
	hexPart, sec, ok := strings.Cut(strings.TrimSpace(code), "-")
	hexPart, sec = strings.ToLower(hexPart), strings.ToUpper(sec)
	if !ok {
		return "", "", fmt.Errorf("%w: want FINGERPRINT-SECRET as printed by `extrasphere node show` on the other node", ErrBadCode)
	}
	if b, err := hex.DecodeString(hexPart); err != nil || len(b) != 32 {
		return "", "", fmt.Errorf("%w: the part before '-' must be 64 hex digits (the other node's fingerprint)", ErrBadCode)
	}
	if err := checkSecret(sec); err != nil {
		return "", "", fmt.Errorf("%w: the part after '-' must be %d base32 characters", ErrBadCode, secretEncoding.EncodedLen(secretBytes))
	}
	return fingerprintPrefix + hexPart, sec, nil
}

// validFingerprint reports whether fp is "SHA256:" and 64 lowercase hex
// digits.
func validFingerprint(fp string) bool {
	h, ok := strings.CutPrefix(fp, fingerprintPrefix)
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}
