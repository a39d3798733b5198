package repo

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Source is what a volume is backed up from. blockdev.Device satisfies
// it. ReadAt fills all of p or fails; it is called from several
// goroutines at once, for distinct chunk-aligned ranges.
type Source interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	Size() int64
}

// BackupOptions configure a backup.
type BackupOptions struct {
	Group string    // prune policies apply per group; "" is a group too
	Tags  []string  // free labels (the volume name rule)
	Host  string    // default: os.Hostname()
	Time  time.Time // the instant the backup stands for; default: now
	// Workers read, hash, compress, encrypt and pack chunks in parallel,
	// per AddVolume; default 4. Memory: about 3 chunks each, plus a pack
	// (Config.PackSize) each while it stores one, plus the pack being
	// filled.
	Workers int
	// Progress, if set, is called (serially) as chunks complete with the
	// bytes done and the total: Total if set, else the sum of the sizes
	// of the volumes added so far.
	Progress func(done, total int64)
	Total    int64
}

// Backup is a backup being taken: a shared lock, the dedup view of the
// repository, the packs being filled, and the volumes added so far.
// Nothing refers to its chunks until Commit writes the index and then the
// manifest, last. Always Close it (after Commit too).
type Backup struct {
	r       *Repo
	lock    *heldLock
	workers int
	opts    BackupOptions
	packer  *packer

	// The repository's chunks when the backup started: the index, less
	// packs the backend no longer lists (gone), plus the chunks of packs
	// no index names (orphans of a killed backup or an interrupted prune,
	// read from their headers). A pack this backup deduplicates against
	// is named by this backup's index.
	idx     *packIndex
	gone    map[uint32]bool
	adopted map[ID]int  // chunk -> index in orphans; read-only after NewBackup
	orphans []indexPack // read-only after NewBackup

	dedupMu    sync.Mutex // guards claimed and orphanUsed
	claimed    map[ID]struct{}
	orphanUsed []bool

	idxMu    sync.Mutex  // guards pending, overhead and packsNew
	pending  []indexPack // packs stored, not yet in an index object
	overhead int64       // bytes stored besides chunk blobs: pack headers, index objects
	packsNew int64

	progMu sync.Mutex // serialises calls of opts.Progress; guards done, total
	done   int64
	total  int64

	mu        sync.Mutex // guards the fields below
	m         Manifest
	names     map[string]bool // volumes added or being added
	active    int             // AddVolume calls running
	err       error           // first failure: the backup cannot commit
	committed bool
	closed    bool
}

// NewBackup takes a shared backup lock and loads the dedup view: the
// index, the list of packs, and the headers of packs no index names.
// Errors: ErrLocked (prune or forget running).
func (r *Repo) NewBackup(ctx context.Context, opts BackupOptions) (*Backup, error) {
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	m := Manifest{ID: newBackupID(opts.Time), Time: opts.Time.Round(0).UTC(), Host: opts.Host, Group: opts.Group,
		Tags: slices.Clone(opts.Tags)}
	if m.Group != "" && !validName(m.Group) {
		return nil, fmt.Errorf("backup group %q: %w", m.Group, ErrInvalid)
	}
	for _, t := range m.Tags {
		if !validName(t) {
			return nil, fmt.Errorf("backup tag %q: %w", t, ErrInvalid)
		}
	}
	if len(m.Tags) > maxTags || len(m.Host) > maxHost {
		return nil, fmt.Errorf("backup: %d tags, host of %d bytes: %w", len(m.Tags), len(m.Host), ErrInvalid)
	}
	l, err := r.lock(ctx, lockBackup, "backup", nil)
	if err != nil {
		return nil, fmt.Errorf("start backup: %w", err)
	}
	b := &Backup{r: r, lock: l, workers: opts.Workers, opts: opts, m: m, names: map[string]bool{},
		claimed: map[ID]struct{}{}, adopted: map[ID]int{}}
	b.packer = newPacker(r, b.packStored)
	if err := b.loadView(ctx); err != nil {
		l.release(ctx)
		return nil, fmt.Errorf("start backup: %w", err)
	}
	return b, nil
}

// ID is the id the backup's manifest will have.
func (b *Backup) ID() string { return b.m.ID }

// Stats returns the counts of the volumes completed so far.
func (b *Backup) Stats() BackupStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Stats
}

// VolumeOptions configure one volume of a backup.
type VolumeOptions struct {
	// Prev is the same volume (same name) in an earlier backup of this
	// repository; nil: a full backup (every chunk is read; unchanged ones still
	// deduplicate against the repository).
	Prev *Volume
	// Dirty lists the ranges changed since Prev (a CBT bitmap). With Prev,
	// a chunk that touches no dirty range reuses Prev's id without being
	// read. nil means everything changed; an empty non-nil slice means
	// nothing did.
	Dirty []blockdev.Range
	// Meta is stored with the volume, opaque to the repository.
	Meta map[string]string
	// Zeros, if set, walks the ranges the source knows read as zeros
	// without reading them (the holes of a thin volume, from its
	// allocation map), calling visit for each. A chunk wholly inside them
	// gets the null id and is not read, so a full backup of a thin volume
	// reads only its allocated chunks. Stats count such chunks as zero
	// (BytesZero) but not as read.
	Zeros func(ctx context.Context, visit func(blockdev.Range)) error
}

// AddVolume backs up one volume: it reads the chunks it cannot reuse,
// hashes them, and uploads those the repository lacks, with b.Workers
// goroutines. Calls for different names may run concurrently. Any error
// fails the whole backup (Commit refuses), since uploads may be partial.
func (b *Backup) AddVolume(ctx context.Context, name string, src Source, opts VolumeOptions) (*Volume, error) {
	vol, err := b.startVolume(name, src, opts)
	if err != nil {
		return nil, err
	}
	st, err := b.runVolume(ctx, vol, src, opts)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.active--
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return nil, err
	}
	b.m.Stats.add(st)
	b.m.Volumes = append(b.m.Volumes, vol)
	return vol, nil
}

func (b *Backup) startVolume(name string, src Source, opts VolumeOptions) (*Volume, error) {
	size := src.Size()
	vol := &Volume{Name: name, Size: size, ChunkSize: b.r.cfg.ChunkSize, Meta: maps.Clone(opts.Meta)}
	if size >= 0 && size <= maxVolumeSize {
		vol.Chunks = make([]ID, vol.NumChunks())
	}
	if err := vol.validate(true); err != nil {
		return nil, fmt.Errorf("back up volume %s: %v: %w", name, err, ErrInvalid)
	}
	if opts.Prev != nil && opts.Prev.Name != name {
		return nil, fmt.Errorf("back up volume %s: the previous backup given is of volume %s: %w", name, opts.Prev.Name, ErrInvalid)
	}
	for _, d := range opts.Dirty {
		if d.Off < 0 || d.Len < 0 {
			return nil, fmt.Errorf("back up volume %s: dirty range %+v: %w", name, d, ErrInvalid)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed || b.committed:
		return nil, fmt.Errorf("back up volume %s: backup %s: %w", name, b.m.ID, ErrClosed)
	case b.err != nil:
		return nil, fmt.Errorf("back up volume %s: backup %s already failed: %w", name, b.m.ID, b.err)
	case b.names[name]:
		return nil, fmt.Errorf("back up volume %s: added twice: %w", name, ErrInvalid)
	case len(b.names) >= maxVolumes:
		return nil, fmt.Errorf("back up volume %s: more than %d volumes: %w", name, maxVolumes, ErrInvalid)
	}
	b.names[name] = true
	b.active++
	b.progMu.Lock()
	b.total += size
	b.progMu.Unlock()
	return vol, nil
}

// progress adds n done bytes and reports.
func (b *Backup) progress(n int64) {
	if b.opts.Progress == nil {
		return
	}
	b.progMu.Lock()
	defer b.progMu.Unlock()
	b.done += n
	total := b.total
	if b.opts.Total > 0 {
		total = b.opts.Total
	}
	b.opts.Progress(b.done, total)
}

// Commit stores the last pack, writes the index of the packs the backup
// stored or deduplicated against that no index named, then the manifest
// (the only object that makes the backup exist), and releases the lock.
// A non-nil manifest means the backup is committed, even if an error (the
// lock could not be removed) comes too.
func (b *Backup) Commit(ctx context.Context) (*Manifest, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed || b.committed:
		return nil, fmt.Errorf("commit backup %s: %w", b.m.ID, ErrClosed)
	case b.err != nil:
		return nil, fmt.Errorf("commit backup %s: it failed: %w", b.m.ID, b.err)
	case b.active > 0:
		return nil, fmt.Errorf("commit backup %s: %d volumes still running: %w", b.m.ID, b.active, ErrInvalid)
	case len(b.m.Volumes) == 0:
		return nil, fmt.Errorf("commit backup %s: no volumes: %w", b.m.ID, ErrInvalid)
	}
	fail := func(err error) (*Manifest, error) {
		b.err = err
		return nil, fmt.Errorf("commit backup %s: %w", b.m.ID, err)
	}
	if err := b.packer.flush(ctx); err != nil {
		return fail(err)
	}
	b.r.fp.Hit(FailBeforeIndex)
	b.idxMu.Lock()
	packs := b.pending
	b.pending = nil
	b.idxMu.Unlock()
	b.dedupMu.Lock()
	for k, used := range b.orphanUsed {
		if used {
			packs = append(packs, b.orphans[k])
		}
	}
	b.dedupMu.Unlock()
	if err := b.writeIndex(ctx, packs); err != nil {
		return fail(err)
	}
	if err := b.lock.check(); err != nil {
		return nil, fmt.Errorf("commit backup %s: %w", b.m.ID, err)
	}
	m := b.m
	m.Volumes = slices.Clone(m.Volumes)
	b.idxMu.Lock()
	m.Stats.BytesStored += b.overhead
	m.Stats.PacksNew = b.packsNew
	b.idxMu.Unlock()
	obj, err := b.r.encodeManifest(&m)
	if err != nil {
		return nil, fmt.Errorf("commit backup %s: %w", m.ID, err)
	}
	b.r.fp.Hit(FailBeforeManifest)
	if err := b.r.b.Put(ctx, manifestKey(m.ID), obj); err != nil {
		return nil, fmt.Errorf("commit backup %s: write manifest: %w", m.ID, err)
	}
	b.committed = true
	b.m.Stats = m.Stats
	if err := b.lock.release(ctx); err != nil {
		return &m, fmt.Errorf("backup %s committed, but: %w", m.ID, err)
	}
	return &m, nil
}

// Close releases the lock; a backup not committed is abandoned: the pack
// being filled is dropped, the packs stored stay, unreferenced (and
// perhaps unindexed), for the next backup to reuse or prune to delete.
// Idempotent.
func (b *Backup) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.lock.release(context.Background())
}
