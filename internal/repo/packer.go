package repo

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// packer gathers chunk blobs into packs and stores each pack once it
// reaches the target size (or packBlobLimit blobs), so the backend sees
// one Put per pack instead of one per chunk. Safe for concurrent use.
//
// Memory: the pack being filled, plus one pack per goroutine storing one:
// the goroutine whose blob fills a pack stores it before it returns,
// which holds back its producer (a budget that blocks, never drops).
// Buffers never grow: one holds the target, one more blob and the
// largest header.
type packer struct {
	r      *Repo
	target int
	// stored is called after each pack is durably stored, outside mu, by
	// the goroutine that stored it; its error is add's or flush's.
	stored func(ctx context.Context, p indexPack, size int64) error

	mu  sync.Mutex // guards cur
	cur *packBuf   // the pack being filled; nil when none
}

// packBuf is a pack being filled: blobs back to back, and their entries.
type packBuf struct {
	data    []byte
	entries []packEntry
}

func newPacker(r *Repo, stored func(ctx context.Context, p indexPack, size int64) error) *packer {
	return &packer{r: r, target: r.cfg.PackSize, stored: stored}
}

// add appends chunk id's blob (copied) to the current pack, and stores
// the pack when that fills it.
func (p *packer) add(ctx context.Context, id ID, blob []byte) error {
	p.mu.Lock()
	if p.cur == nil {
		p.cur = p.newBuf()
	}
	c := p.cur
	c.entries = append(c.entries, packEntry{ID: id, Off: uint32(len(c.data)), Len: uint32(len(blob))})
	c.data = append(c.data, blob...)
	var full *packBuf
	if len(c.data) >= p.target || len(c.entries) >= packBlobLimit {
		full, p.cur = c, nil
	}
	p.mu.Unlock()
	if full == nil {
		return nil
	}
	return p.store(ctx, full)
}

// flush stores the current pack, however small.
func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	c := p.cur
	p.cur = nil
	p.mu.Unlock()
	if c == nil || len(c.entries) == 0 {
		return nil
	}
	return p.store(ctx, c)
}

// store finishes a pack (header, footer), names it by its hash and Puts it.
func (p *packer) store(ctx context.Context, c *packBuf) error {
	data := p.r.codec.finishPack(c.data, c.entries)
	id := contentID(data)
	if err := p.r.b.Put(ctx, packKey(id), data); err != nil {
		return fmt.Errorf("store pack %s: %w", packKey(id), err)
	}
	ip := indexPack{ID: id, Entries: slices.Clone(c.entries)}
	c.data, c.entries = data[:0], c.entries[:0]
	if cap(c.data) == p.bufCap() {
		p.r.packBufs.Put(c)
	}
	return p.stored(ctx, ip, int64(len(data)))
}

// bufCap is what a pack can grow to: the target, one more blob, and the
// largest header.
func (p *packer) bufCap() int {
	return p.target + p.r.cfg.ChunkSize + int(p.r.codec.packHeaderLen(packBlobLimit)) + hdrLen + nonceLen + tagLen + crcLen
}

// newBuf returns a reused buffer or a new one: the repository keeps
// stored packs' buffers in a sync.Pool, so back-to-back backups and
// repacks do not fault in fresh memory for every pack.
func (p *packer) newBuf() *packBuf {
	if c, ok := p.r.packBufs.Get().(*packBuf); ok && cap(c.data) == p.bufCap() {
		return c
	}
	return &packBuf{data: make([]byte, 0, p.bufCap())}
}
