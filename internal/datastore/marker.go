package datastore

import (
	"github.com/extrasphere/extrasphere/internal/vmdk"

	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// MarkerFile is the name of the marker at the root of every datastore.
const MarkerFile = "extrasphere-datastore.json"

// Marker constants. They are written to disk: must not change.
const (
	MarkerMagic   = "extrasphere-datastore"
	MarkerVersion = 1
)

// maxMarkerSize bounds what ReadMarker reads; a real marker is ~250 bytes.
const maxMarkerSize = 64 << 10

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Marker is the content of extrasphere-datastore.json. The field order is
// the canonical order: Checksum is the CRC-32C of the compact JSON encoding
// of the marker with Checksum empty (and so omitted), as
// "crc32c:" + 8 lowercase hex digits.
type Marker struct {
	Magic    string `json:"magic"`
	Version  int    `json:"version"`
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Created  string `json:"created"` // RFC 3339, UTC
	Checksum string `json:"checksum,omitempty"`
}

// NewMarker returns a marker for a new datastore called name.
func NewMarker(name string, now time.Time) (*Marker, error) {
	if err := CheckName("datastore", name); err != nil {
		return nil, err
	}
	id, err := newUUID()
	if err != nil {
		return nil, err
	}
	m := &Marker{Magic: MarkerMagic, Version: MarkerVersion, Name: name, UUID: id,
		Created: now.UTC().Format(time.RFC3339)}
	m.Checksum, err = m.sum()
	if err != nil {
		return nil, err
	}
	return m, nil
}

// sum computes the checksum over the canonical encoding.
func (m *Marker) sum() (string, error) {
	c := *m
	c.Checksum = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode marker: %w", err)
	}
	return fmt.Sprintf("crc32c:%08x", crc32.Checksum(b, castagnoli)), nil
}

// Validate checks magic, version, name, uuid, created and checksum.
func (m *Marker) Validate() error {
	if m.Magic != MarkerMagic {
		return fmt.Errorf("magic %q, want %q: %w", m.Magic, MarkerMagic, ErrBadMarker)
	}
	if m.Version != MarkerVersion {
		return fmt.Errorf("version %d, this build reads version %d: %w", m.Version, MarkerVersion, ErrBadMarker)
	}
	if !ValidName(m.Name) {
		return fmt.Errorf("name %q is not a valid datastore name: %w", m.Name, ErrBadMarker)
	}
	if !uuidRE.MatchString(m.UUID) {
		return fmt.Errorf("uuid %q is malformed: %w", m.UUID, ErrBadMarker)
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		return fmt.Errorf("created %q is not an RFC 3339 time: %w", m.Created, ErrBadMarker)
	}
	want, err := m.sum()
	if err != nil {
		return err
	}
	if m.Checksum != want {
		return fmt.Errorf("checksum %q, content sums to %q: %w", m.Checksum, want, ErrBadMarker)
	}
	return nil
}

// DecodeMarker parses and validates marker bytes.
func DecodeMarker(b []byte) (*Marker, error) {
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode: %v: %w", err, ErrBadMarker)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ReadMarker reads and validates DIR/extrasphere-datastore.json. A missing
// file fails with ErrNoMarker.
func ReadMarker(dir string) (*Marker, error) {
	p := filepath.Join(dir, MarkerFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", p, ErrNoMarker)
	}
	if err != nil {
		return nil, fmt.Errorf("read marker: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMarkerSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(b) > maxMarkerSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes: %w", p, maxMarkerSize, ErrBadMarker)
	}
	m, err := DecodeMarker(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return m, nil
}

// WriteMarker writes m to DIR/extrasphere-datastore.json durably (temp
// file, fsync, rename, fsync dir).
func WriteMarker(dir string, m *Marker) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("write marker in %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode marker: %w", err)
	}
	b = append(b, '\n')
	return vmdk.WriteFileAtomic(filepath.Join(dir, MarkerFile), b)
}

func newUUID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", fmt.Errorf("generate uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
