package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
)

// An index object lists, for some packs, where each chunk is: it is how
// the repository finds chunks without reading pack headers. Body (then
// zstd when that is smaller, AES-256-GCM when the repository is encrypted,
// sealed under the name "index", and the envelope "XSRI"):
//
//	0   u8  version = 1 (must not change for this layout)
//	1   [3] zero
//	4   u32 P: number of packs (>= 1)
//	8   P times: pack id [32], u32 N (>= 1), then N entries
//	    { chunk id [32], u32 offset, u32 length }, by increasing offset
//
// An index object is named index/<SHA-256 of the object's bytes>; a
// reader checks the name. Entries of one pack do not overlap; they are
// the pack header's entries, or some of them (verify --repair drops a
// corrupt blob's entry). Writers split an index at maxIndexEntries.
const (
	indexVersion    = 1       // body version: must not change for this layout
	indexName       = "index" // GCM name of every index object: must not change
	maxIndexEntries = 1 << 20 // per object, when writing (about 40 MiB)
)

// indexPack is one pack's part of an index: the pack and its entries.
type indexPack struct {
	ID      ID
	Entries []packEntry
}

// encodeIndexBody makes an index body; packs must be valid (validIndexPack).
func encodeIndexBody(packs []indexPack) []byte {
	n := 8
	for _, p := range packs {
		n += 36 + len(p.Entries)*packEntryLen
	}
	body := make([]byte, 8, n)
	body[0] = indexVersion
	binary.LittleEndian.PutUint32(body[4:], uint32(len(packs)))
	for _, p := range packs {
		body = append(body, p.ID[:]...)
		body = binary.LittleEndian.AppendUint32(body, uint32(len(p.Entries)))
		body = appendEntries(body, p.Entries)
	}
	return body
}

// decodeIndexBody parses and checks an index body.
func decodeIndexBody(body []byte) ([]indexPack, error) {
	if len(body) < 8 {
		return nil, fmt.Errorf("index body of %d bytes: %w", len(body), ErrCorrupt)
	}
	if body[0] != indexVersion {
		if body[0] > indexVersion {
			return nil, fmt.Errorf("index version %d (this build reads %d): %w", body[0], indexVersion, ErrVersion)
		}
		return nil, fmt.Errorf("index version %d: %w", body[0], ErrCorrupt)
	}
	if body[1] != 0 || body[2] != 0 || body[3] != 0 {
		return nil, fmt.Errorf("index header reserved bytes: %w", ErrCorrupt)
	}
	np := binary.LittleEndian.Uint32(body[4:])
	rest := body[8:]
	// Each pack takes at least 36+40 bytes: the count is bounded by the input.
	if np == 0 || uint64(np) > uint64(len(rest))/(36+packEntryLen) {
		return nil, fmt.Errorf("index lists %d packs in %d bytes: %w", np, len(body), ErrCorrupt)
	}
	packs := make([]indexPack, 0, np)
	seen := make(map[ID]struct{}, np)
	for range np {
		if len(rest) < 36 {
			return nil, fmt.Errorf("index truncated: %w", ErrCorrupt)
		}
		var p indexPack
		copy(p.ID[:], rest)
		n := binary.LittleEndian.Uint32(rest[32:])
		rest = rest[36:]
		if n == 0 || n > maxPackBlobs || uint64(n)*packEntryLen > uint64(len(rest)) {
			return nil, fmt.Errorf("index: pack %s with %d entries: %w", p.ID, n, ErrCorrupt)
		}
		if _, dup := seen[p.ID]; dup {
			return nil, fmt.Errorf("index lists pack %s twice: %w", p.ID, ErrCorrupt)
		}
		seen[p.ID] = struct{}{}
		p.Entries = make([]packEntry, n)
		for i := range p.Entries {
			p.Entries[i] = readEntry(rest[i*packEntryLen:])
		}
		rest = rest[n*packEntryLen:]
		if err := validIndexPack(p); err != nil {
			return nil, err
		}
		packs = append(packs, p)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("index: %d bytes after the last pack: %w", len(rest), ErrCorrupt)
	}
	return packs, nil
}

// validIndexPack: entries by increasing offset, not overlapping, each of
// a possible blob length, no null or repeated chunk id.
func validIndexPack(p indexPack) error {
	var end int64
	seen := make(map[ID]struct{}, len(p.Entries))
	for i, e := range p.Entries {
		if (i > 0 && int64(e.Off) < end) || e.Len < minBlobLen || e.Len > maxBlobLen || e.ID.IsNull() {
			return fmt.Errorf("index: pack %s entry %d: chunk %s at [%d, +%d): %w", p.ID, i, e.ID, e.Off, e.Len, ErrCorrupt)
		}
		if _, dup := seen[e.ID]; dup {
			return fmt.Errorf("index: pack %s lists chunk %s twice: %w", p.ID, e.ID, ErrCorrupt)
		}
		seen[e.ID] = struct{}{}
		end = e.end()
	}
	return nil
}

// decodeIndex checks an index object stored as index/<id> and parses it.
func (c *codec) decodeIndex(id ID, obj []byte) ([]indexPack, error) {
	if contentID(obj) != id {
		return nil, fmt.Errorf("content does not hash to its name: %w", ErrCorrupt)
	}
	body, err := c.decode(magicIndex, indexName, obj, maxMetaSize, nil)
	if err != nil {
		return nil, err
	}
	return decodeIndexBody(body)
}

// writeIndex stores packs as index objects of at most maxIndexEntries
// entries each (durable when it returns) and returns their ids and total
// size. Nothing is written for no packs.
func (r *Repo) writeIndex(ctx context.Context, packs []indexPack) ([]ID, int64, error) {
	var ids []ID
	var size int64
	for len(packs) > 0 {
		k, n := 0, 0
		for k < len(packs) && (k == 0 || n+len(packs[k].Entries) <= maxIndexEntries) {
			n += len(packs[k].Entries)
			k++
		}
		part := slices.Clone(packs[:k])
		packs = packs[k:]
		slices.SortFunc(part, func(a, b indexPack) int { return slices.Compare(a.ID[:], b.ID[:]) })
		obj := r.codec.encode(nil, magicIndex, indexName, encodeIndexBody(part), true, nil)
		id := contentID(obj)
		if err := r.b.Put(ctx, indexKey(id), obj); err != nil {
			return ids, size, fmt.Errorf("write index %s: %w", indexKey(id), err)
		}
		ids = append(ids, id)
		size += int64(len(obj))
	}
	return ids, size, nil
}
