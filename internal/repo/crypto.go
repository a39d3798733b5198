package repo

import (
	"crypto/rand"
	"fmt"
	"runtime/debug"

	"golang.org/x/crypto/argon2"
)

// KDFParams are the argon2id parameters that turn a password into the key
// wrapping the master key. They are stored in the config.
type KDFParams struct {
	Time      uint32 `json:"time"`       // passes
	MemoryKiB uint32 `json:"memory_kib"` // memory in KiB
	Threads   uint8  `json:"threads"`    // lanes
}

// DefaultKDF is RFC 9106's second recommended setting: t=3, 64 MiB, p=4
// (about 0.2 s on this class of machine).
func DefaultKDF() KDFParams { return KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4} }

// Validate bounds the parameters, so a damaged or hostile config cannot
// make Open allocate or spin without limit.
func (p KDFParams) Validate() error {
	if p.Time < 1 || p.Time > 100 || p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 4<<20 {
		return fmt.Errorf("argon2id parameters t=%d m=%dKiB p=%d out of range: %w", p.Time, p.MemoryKiB, p.Threads, ErrInvalid)
	}
	return nil
}

const (
	masterKeyLen = 32
	saltLen      = 16
	wrappedLen   = nonceLen + masterKeyLen + tagLen
)

// wrapAD binds a wrapped key to its repository: must not change.
func wrapAD(repoID string) []byte { return []byte("extrasphere-repo v1 master key " + repoID) }

// kek derives the key-encryption key from a password. Argon2id fills
// p.MemoryKiB (64 MiB by default) on purpose; that memory is garbage when
// it returns, so it is handed back to the OS at once instead of staying in
// the daemon's RSS until the runtime's scavenger gets to it.
func kek(password, salt []byte, p KDFParams) []byte {
	k := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	debug.FreeOSMemory()
	return k
}

// newEncryption makes a random master key and wraps it under password.
func newEncryption(password []byte, p KDFParams, repoID string) (*Encryption, []byte, error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	master := make([]byte, masterKeyLen)
	salt := make([]byte, saltLen)
	rand.Read(master)
	rand.Read(salt)
	aead, err := newAEAD(kek(password, salt, p))
	if err != nil {
		return nil, nil, err
	}
	e := &Encryption{Cipher: cipherName, KDF: kdfName, Params: p, Salt: salt,
		WrappedKey: seal(aead, nil, master, wrapAD(repoID))}
	return e, master, nil
}

// unwrap recovers the master key; a wrong password fails the GCM tag and
// returns ErrWrongPassword.
func (e *Encryption) unwrap(password []byte, repoID string) ([]byte, error) {
	aead, err := newAEAD(kek(password, e.Salt, e.Params))
	if err != nil {
		return nil, err
	}
	master, err := aead.Open(nil, e.WrappedKey[:nonceLen], e.WrappedKey[nonceLen:], wrapAD(repoID))
	if err != nil {
		return nil, fmt.Errorf("the password does not unlock the repository key: %w", ErrWrongPassword)
	}
	return master, nil
}
