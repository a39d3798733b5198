package repo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Manifest is one backup. Every backup is logically full: each volume
// lists the id of every chunk, so restore and prune never walk a chain.
type Manifest struct {
	ID      string    // sortable, time-based: "20261124-231236-1a2b3c4d"
	Time    time.Time // the instant the backup stands for
	Host    string    // optional
	Group   string    // prune policies apply per group; may be empty
	Tags    []string
	Volumes []*Volume
	Stats   BackupStats // what the backup read and stored
}

// Volume is one disk image of a backup, cut into fixed-size chunks
// aligned to disk offsets: chunk i covers bytes [i*ChunkSize,
// min((i+1)*ChunkSize, Size)).
type Volume struct {
	Name      string
	Size      int64
	ChunkSize int
	Chunks    []ID              // one per chunk; the null id for an all-zero chunk
	Meta      map[string]string // opaque to the repository (CBT generation, ...)
}

// BackupStats counts what a backup did. BytesTotal = BytesReused +
// BytesRead; BytesRead = BytesZero + BytesDeduped + BytesNew.
type BackupStats struct {
	BytesTotal    int64 `json:"bytes_total"`    // sum of the volume sizes
	BytesReused   int64 `json:"bytes_reused"`   // not read: ids taken from the previous backup
	BytesRead     int64 `json:"bytes_read"`     // read from the sources
	BytesZero     int64 `json:"bytes_zero"`     // all zero (read, or a hole the source's allocation map named): null ids, nothing stored
	BytesDeduped  int64 `json:"bytes_deduped"`  // read, already in the repository (or in this backup)
	BytesNew      int64 `json:"bytes_new"`      // plaintext of the chunks uploaded
	BytesStored   int64 `json:"bytes_stored"`   // bytes stored: chunk blobs (compressed, encrypted), pack headers, index objects; not the manifest
	ChunksReused  int64 `json:"chunks_reused"`  //
	ChunksRead    int64 `json:"chunks_read"`    //
	ChunksZero    int64 `json:"chunks_zero"`    //
	ChunksDeduped int64 `json:"chunks_deduped"` //
	ChunksNew     int64 `json:"chunks_new"`     //
	PacksNew      int64 `json:"packs_new"`      // pack objects stored
}

func (s *BackupStats) add(o BackupStats) {
	s.BytesTotal += o.BytesTotal
	s.BytesReused += o.BytesReused
	s.BytesRead += o.BytesRead
	s.BytesZero += o.BytesZero
	s.BytesDeduped += o.BytesDeduped
	s.BytesNew += o.BytesNew
	s.BytesStored += o.BytesStored
	s.ChunksReused += o.ChunksReused
	s.ChunksRead += o.ChunksRead
	s.ChunksZero += o.ChunksZero
	s.ChunksDeduped += o.ChunksDeduped
	s.ChunksNew += o.ChunksNew
	s.PacksNew += o.PacksNew
}

// Volume returns the volume of that name or an error wrapping ErrNotFound.
func (m *Manifest) Volume(name string) (*Volume, error) {
	for _, v := range m.Volumes {
		if v.Name == name {
			return v, nil
		}
	}
	return nil, fmt.Errorf("backup %s has no volume %q: %w", m.ID, name, ErrNotFound)
}

// NumChunks is ceil(Size / ChunkSize).
func (v *Volume) NumChunks() int { return numChunks(v.Size, v.ChunkSize) }

func numChunks(size int64, cs int) int { return int((size + int64(cs) - 1) / int64(cs)) }

// ChunkLen is the length of chunk i (the last one may be short).
func (v *Volume) ChunkLen(i int) int {
	return int(min(int64(v.ChunkSize), v.Size-int64(i)*int64(v.ChunkSize)))
}

// Manifest limits, so that a decoder's allocations stay bounded by its input.
const (
	manifestVersion = 1 // body version: must not change for this layout
	maxVolumes      = 256
	maxTags         = 64
	maxMeta         = 256
	maxMetaKey      = 256
	maxMetaValue    = 64 << 10
	maxHost         = 255
	maxHeaderJSON   = 16 << 20
	maxVolumeSize   = 1 << 60
)

// validName is the volume rule of the datastore: a letter or digit, then
// up to 63 letters, digits, '.', '_' or '-'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !ok && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Validate checks a manifest (decoded, or about to be written).
func (m *Manifest) Validate() error { return m.validate(true) }

// validate checks m; without tables its volumes hold no chunk ids (a
// summary, see Repo.Summaries).
func (m *Manifest) validate(tables bool) error {
	if !validBackupID(m.ID) {
		return fmt.Errorf("manifest id %q: %w", m.ID, ErrCorrupt)
	}
	if m.Time.IsZero() {
		return fmt.Errorf("manifest time missing: %w", ErrCorrupt)
	}
	if len(m.Host) > maxHost || !utf8.ValidString(m.Host) {
		return fmt.Errorf("manifest host %q: %w", m.Host, ErrCorrupt)
	}
	if m.Group != "" && !validName(m.Group) {
		return fmt.Errorf("manifest group %q: %w", m.Group, ErrCorrupt)
	}
	if len(m.Tags) > maxTags {
		return fmt.Errorf("manifest has %d tags: %w", len(m.Tags), ErrCorrupt)
	}
	for _, t := range m.Tags {
		if !validName(t) {
			return fmt.Errorf("manifest tag %q: %w", t, ErrCorrupt)
		}
	}
	if len(m.Volumes) == 0 || len(m.Volumes) > maxVolumes {
		return fmt.Errorf("manifest has %d volumes: %w", len(m.Volumes), ErrCorrupt)
	}
	seen := map[string]bool{}
	for _, v := range m.Volumes {
		if err := v.validate(tables); err != nil {
			return err
		}
		if seen[v.Name] {
			return fmt.Errorf("manifest lists volume %q twice: %w", v.Name, ErrCorrupt)
		}
		seen[v.Name] = true
	}
	return nil
}

func (v *Volume) validate(tables bool) error {
	if !validName(v.Name) {
		return fmt.Errorf("volume name %q: %w", v.Name, ErrCorrupt)
	}
	if v.Size < 0 || v.Size > maxVolumeSize || !validChunkSize(v.ChunkSize) {
		return fmt.Errorf("volume %s: size %d, chunk size %d: %w", v.Name, v.Size, v.ChunkSize, ErrCorrupt)
	}
	if tables && len(v.Chunks) != v.NumChunks() {
		return fmt.Errorf("volume %s: %d chunk ids for %d chunks: %w", v.Name, len(v.Chunks), v.NumChunks(), ErrCorrupt)
	}
	if len(v.Meta) > maxMeta {
		return fmt.Errorf("volume %s: %d metadata entries: %w", v.Name, len(v.Meta), ErrCorrupt)
	}
	for k, val := range v.Meta {
		if k == "" || len(k) > maxMetaKey || len(val) > maxMetaValue || !utf8.ValidString(k) || !utf8.ValidString(val) {
			return fmt.Errorf("volume %s: metadata key %.40q: %w", v.Name, k, ErrCorrupt)
		}
	}
	return nil
}

// Body layout (then zstd, AES-256-GCM when encrypted, and the envelope
// with magic "XSRM"):
//
//	0      u32 J: length of the JSON header
//	4      [J] JSON header (manifestJSON)
//	4+J    chunk ids, 32 bytes each: volume 0's, then volume 1's, ...; nothing after
type manifestJSON struct {
	V       int          `json:"v"`    // manifestVersion
	ID      string       `json:"id"`   // = the object key's id
	Repo    string       `json:"repo"` // = the config id
	Time    time.Time    `json:"time"`
	Host    string       `json:"host,omitempty"`
	Group   string       `json:"group,omitempty"`
	Tags    []string     `json:"tags,omitempty"`
	Volumes []volumeJSON `json:"volumes"`
	Stats   BackupStats  `json:"stats"`
}

type volumeJSON struct {
	Name      string            `json:"name"`
	Size      int64             `json:"size"`
	ChunkSize int               `json:"chunk_size"`
	Chunks    int               `json:"chunks"` // number of ids in the table
	Meta      map[string]string `json:"meta,omitempty"`
}

// encodeManifestBody makes the plaintext body of m for repository repoID.
func encodeManifestBody(m *Manifest, repoID string) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	h := manifestJSON{V: manifestVersion, ID: m.ID, Repo: repoID, Time: m.Time, Host: m.Host, Group: m.Group,
		Tags: m.Tags, Stats: m.Stats}
	n := 0
	for _, v := range m.Volumes {
		h.Volumes = append(h.Volumes, volumeJSON{Name: v.Name, Size: v.Size, ChunkSize: v.ChunkSize, Chunks: len(v.Chunks), Meta: v.Meta})
		n += len(v.Chunks)
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	body := make([]byte, 0, 4+len(js)+n*len(ID{}))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(js)))
	body = append(body, js...)
	for _, v := range m.Volumes {
		for _, id := range v.Chunks {
			body = append(body, id[:]...)
		}
	}
	return body, nil
}

// decodeManifestBody parses a body and checks it belongs under id in
// repository repoID.
func decodeManifestBody(body []byte, id, repoID string) (*Manifest, error) {
	return parseManifestBody(body, id, repoID, true)
}

// parseManifestBody is decodeManifestBody; without tables the volumes get
// no chunk ids (their count is still checked against the header's).
func parseManifestBody(body []byte, id, repoID string, tables bool) (*Manifest, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("manifest body of %d bytes: %w", len(body), ErrCorrupt)
	}
	j := binary.LittleEndian.Uint32(body)
	if j > maxHeaderJSON || uint64(j) > uint64(len(body)-4) {
		return nil, fmt.Errorf("manifest header length %d: %w", j, ErrCorrupt)
	}
	js, ids := body[4:4+j], body[4+j:]
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("manifest header: %v: %w", err, ErrCorrupt)
	}
	if head.V != manifestVersion {
		if head.V > manifestVersion {
			return nil, fmt.Errorf("manifest version %d (this build reads %d): %w", head.V, manifestVersion, ErrVersion)
		}
		return nil, fmt.Errorf("manifest version %d: %w", head.V, ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var h manifestJSON
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("manifest header: %v: %w", err, ErrCorrupt)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest header: trailing data: %w", ErrCorrupt)
	}
	if h.ID != id || h.Repo != repoID {
		return nil, fmt.Errorf("manifest says it is backup %q of repository %q, not %q of %q: %w", h.ID, h.Repo, id, repoID, ErrCorrupt)
	}
	if len(h.Volumes) > maxVolumes {
		return nil, fmt.Errorf("manifest has %d volumes: %w", len(h.Volumes), ErrCorrupt)
	}
	total := uint64(0)
	for _, v := range h.Volumes {
		if v.Chunks < 0 {
			return nil, fmt.Errorf("volume %s: %d chunks: %w", v.Name, v.Chunks, ErrCorrupt)
		}
		total += uint64(v.Chunks)
	}
	if total*uint64(len(ID{})) != uint64(len(ids)) {
		return nil, fmt.Errorf("manifest lists %d chunks but holds %d bytes of ids: %w", total, len(ids), ErrCorrupt)
	}
	m := &Manifest{ID: h.ID, Time: h.Time, Host: h.Host, Group: h.Group, Tags: h.Tags, Stats: h.Stats}
	for _, vj := range h.Volumes {
		v := &Volume{Name: vj.Name, Size: vj.Size, ChunkSize: vj.ChunkSize, Meta: vj.Meta}
		if tables {
			v.Chunks = make([]ID, vj.Chunks)
			for i := range v.Chunks {
				copy(v.Chunks[i][:], ids[i*len(ID{}):])
			}
		} else if validChunkSize(vj.ChunkSize) && vj.Size >= 0 && vj.Chunks != v.NumChunks() {
			return nil, fmt.Errorf("volume %s: %d chunk ids for %d chunks: %w", v.Name, vj.Chunks, v.NumChunks(), ErrCorrupt)
		}
		ids = ids[vj.Chunks*len(ID{}):]
		m.Volumes = append(m.Volumes, v)
	}
	if err := m.validate(tables); err != nil {
		return nil, err
	}
	return m, nil
}
