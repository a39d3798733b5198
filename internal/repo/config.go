package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Config format constants.
const (
	formatName = "extrasphere-repo" // config "format": must not change
	// FormatVersion is the repository format this build writes and reads
	// (2: chunks packed into pack objects, found through index objects).
	// Version 1 (one object per chunk) was never released; it is refused.
	FormatVersion = 2
	// DefaultChunkSize is the chunk size of a new repository: the CBT
	// granularity, so an incremental backup stores about what changed.
	DefaultChunkSize = 64 << 10
	// MinChunkSize and MaxChunkSize bound a repository's chunk size (a
	// power of two).
	MinChunkSize = 4 << 10
	MaxChunkSize = maxChunkSize
	// DefaultPackSize is the size a pack grows to before it is stored.
	DefaultPackSize = 16 << 20
	// MinPackSize and MaxPackSize bound the pack size of a config (tiny
	// packs are for tests).
	MinPackSize = 4 << 10
	MaxPackSize = 256 << 20

	cipherName = "aes-256-gcm"
	kdfName    = "argon2id"
)

// Config is the repository's "config" object: written once by Init,
// never changed.
type Config struct {
	Format     string      `json:"format"`  // "extrasphere-repo"
	Version    int         `json:"version"` // FormatVersion
	ID         string      `json:"id"`      // 32 lowercase hex, random
	Created    time.Time   `json:"created"`
	ChunkSize  int         `json:"chunk_size"`           // bytes, power of two
	PackSize   int         `json:"pack_size"`            // bytes a pack grows to before it is stored
	Encryption *Encryption `json:"encryption,omitempty"` // nil: not encrypted
}

// Encryption holds what unlocks an encrypted repository: the argon2id
// parameters and salt, and the master key sealed with AES-256-GCM under
// the key they derive (nonce || ciphertext || tag).
type Encryption struct {
	Cipher     string    `json:"cipher"` // "aes-256-gcm"
	KDF        string    `json:"kdf"`    // "argon2id"
	Params     KDFParams `json:"params"`
	Salt       []byte    `json:"salt"`        // 16 bytes (base64 in JSON)
	WrappedKey []byte    `json:"wrapped_key"` // 60 bytes (base64 in JSON)
}

// validChunkSize: a power of two in [MinChunkSize, MaxChunkSize].
func validChunkSize(n int) bool {
	return n >= MinChunkSize && n <= MaxChunkSize && n&(n-1) == 0
}

// Validate checks every field.
func (c *Config) Validate() error {
	if c.Format != formatName {
		return fmt.Errorf("config format %q: %w", c.Format, ErrNotRepo)
	}
	if err := checkVersion(c.Version); err != nil {
		return err
	}
	if !isHex(c.ID, 32) {
		return fmt.Errorf("config id %q: %w", c.ID, ErrCorrupt)
	}
	if c.Created.IsZero() {
		return fmt.Errorf("config created time missing: %w", ErrCorrupt)
	}
	if !validChunkSize(c.ChunkSize) {
		return fmt.Errorf("config chunk size %d: %w", c.ChunkSize, ErrCorrupt)
	}
	if c.PackSize < MinPackSize || c.PackSize > MaxPackSize {
		return fmt.Errorf("config pack size %d: %w", c.PackSize, ErrCorrupt)
	}
	if e := c.Encryption; e != nil {
		if e.Cipher != cipherName || e.KDF != kdfName {
			return fmt.Errorf("cipher %q with kdf %q: %w", e.Cipher, e.KDF, ErrVersion)
		}
		if err := e.Params.Validate(); err != nil {
			return fmt.Errorf("config: %v: %w", err, ErrCorrupt)
		}
		if len(e.Salt) != saltLen || len(e.WrappedKey) != wrappedLen {
			return fmt.Errorf("config: salt of %d bytes, wrapped key of %d: %w", len(e.Salt), len(e.WrappedKey), ErrCorrupt)
		}
	}
	return nil
}

// checkVersion refuses every repository format but this build's: newer
// ones, and version 1 (one object per chunk), which development builds
// wrote before packs and which no release reads.
func checkVersion(v int) error {
	switch {
	case v > FormatVersion:
		return fmt.Errorf("repository format version %d (this build reads %d; use a newer extrasphere): %w", v, FormatVersion, ErrVersion)
	case v == 1:
		return fmt.Errorf("repository format version 1 (one object per chunk) was written by a development build and is not "+
			"read by this one (format %d, chunks packed into packs): create a new repository and take a full backup: %w", FormatVersion, ErrVersion)
	case v != FormatVersion:
		return fmt.Errorf("repository format version %d: %w", v, ErrCorrupt)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// encodeConfig makes the config object: the envelope (magic "XSRK", no
// compression, never encrypted: it holds what decrypts the rest) around
// indented JSON.
func encodeConfig(c *Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	obj := appendHeader(nil, magicConfig, 0, len(body))
	return appendCRC(append(obj, body...)), nil
}

// DecodeConfig parses and validates a config object. Errors: ErrNotRepo
// (not a config object at all), ErrVersion (newer format), ErrCorrupt.
func DecodeConfig(obj []byte) (*Config, error) {
	e, err := parseEnvelope(magicConfig, obj)
	if errors.Is(err, errBadMagic) {
		return nil, fmt.Errorf("config object has no %q magic: %w", magicConfig, ErrNotRepo)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if e.flags != 0 || e.plainLen != len(e.payload) || e.plainLen > maxSmallSize {
		return nil, fmt.Errorf("config: flags %#x, length %d: %w", e.flags, e.plainLen, ErrCorrupt)
	}
	// Format and version first, loosely: a newer version may add fields
	// the strict decode below would call corrupt.
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(e.payload, &head); err != nil {
		return nil, fmt.Errorf("config: %v: %w", err, ErrCorrupt)
	}
	if head.Format != formatName {
		return nil, fmt.Errorf("config format %q: %w", head.Format, ErrNotRepo)
	}
	if err := checkVersion(head.Version); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(e.payload))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %v: %w", err, ErrCorrupt)
	}
	if dec.More() {
		return nil, fmt.Errorf("config: trailing data: %w", ErrCorrupt)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
