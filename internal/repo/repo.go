package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// InitOptions configure a new repository.
type InitOptions struct {
	// Password encrypts the repository when not nil (it must not be
	// empty). nil: no encryption.
	Password []byte
	// ChunkSize in bytes: a power of two from MinChunkSize to
	// MaxChunkSize; 0 means DefaultChunkSize.
	ChunkSize int
	// KDF: argon2id parameters; the zero value means DefaultKDF().
	KDF KDFParams
	// PackSize in bytes: how large a pack grows before it is stored, from
	// MinPackSize to MaxPackSize; 0 means DefaultPackSize.
	PackSize int
}

// Repo is an open repository. It is safe for concurrent use.
type Repo struct {
	b     backend.Backend
	cfg   Config
	codec *codec

	host string
	pid  int

	fp *failpoint.Set // crash-test failpoints; nil arms none

	// sweepBatch is how many pack deletions prune runs between lock
	// checks (256; crash tests lower it).
	sweepBatch int

	packBufs sync.Pool // *packBuf of stored packs, for the next packer

	idxMu sync.Mutex                // serialises index refreshes
	idx   atomic.Pointer[packIndex] // the index as last refreshed; nil before the first

	// Lock timing: a lock not refreshed for lockStale is stale; locks are
	// refreshed every lockRefresh. Set at Open (tests shorten them).
	lockStale   time.Duration
	lockRefresh time.Duration
}

// Default lock timing (restic's).
const (
	DefaultLockStale   = 30 * time.Minute
	DefaultLockRefresh = 5 * time.Minute
)

// Init creates a repository in an empty location. It fails with
// ErrExists if the location holds a config or any other object.
func Init(ctx context.Context, b backend.Backend, opts InitOptions) (*Repo, error) {
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if !validChunkSize(opts.ChunkSize) {
		return nil, fmt.Errorf("init repository: chunk size %d is not a power of two from %d to %d: %w",
			opts.ChunkSize, MinChunkSize, MaxChunkSize, ErrInvalid)
	}
	if opts.Password != nil && len(opts.Password) == 0 {
		return nil, fmt.Errorf("init repository: empty password: %w", ErrInvalid)
	}
	if opts.KDF == (KDFParams{}) {
		opts.KDF = DefaultKDF()
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.PackSize < MinPackSize || opts.PackSize > MaxPackSize {
		return nil, fmt.Errorf("init repository: pack size %d is not from %d to %d: %w",
			opts.PackSize, MinPackSize, MaxPackSize, ErrInvalid)
	}
	if _, err := b.Size(ctx, configKey); err == nil {
		return nil, fmt.Errorf("init repository at %s: %w", b.Location(), ErrExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("init repository at %s: %w", b.Location(), err)
	}
	errNotEmpty := errors.New("not empty")
	err := b.List(ctx, "", func(key string, _ int64) error {
		return fmt.Errorf("%w: holds %s", errNotEmpty, key)
	})
	if errors.Is(err, errNotEmpty) {
		return nil, fmt.Errorf("init repository at %s: location %v: %w", b.Location(), err, ErrExists)
	} else if err != nil {
		return nil, fmt.Errorf("init repository at %s: %w", b.Location(), err)
	}
	cfg := Config{Format: formatName, Version: FormatVersion, ID: randomHex(16),
		Created: time.Now().UTC().Round(0), ChunkSize: opts.ChunkSize, PackSize: opts.PackSize}
	var master []byte
	if opts.Password != nil {
		if cfg.Encryption, master, err = newEncryption(opts.Password, opts.KDF, cfg.ID); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
	}
	obj, err := encodeConfig(&cfg)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	if err := b.Put(ctx, configKey, obj); err != nil {
		return nil, fmt.Errorf("init repository at %s: write config: %w", b.Location(), err)
	}
	return newRepo(b, cfg, master)
}

// Open opens the repository in b. password must be nil for an
// unencrypted repository and the password for an encrypted one. Errors:
// ErrNotRepo, ErrWrongPassword, ErrVersion, ErrCorrupt.
func Open(ctx context.Context, b backend.Backend, password []byte) (*Repo, error) {
	obj, err := b.Get(ctx, configKey)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: no config: %w", b.Location(), ErrNotRepo)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", b.Location(), err)
	}
	cfg, err := DecodeConfig(obj)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", b.Location(), err)
	}
	var master []byte
	switch {
	case cfg.Encryption == nil && password != nil:
		return nil, fmt.Errorf("open repository %s: it is not encrypted, yet a password was given: %w", b.Location(), ErrWrongPassword)
	case cfg.Encryption != nil && len(password) == 0:
		return nil, fmt.Errorf("open repository %s: it is encrypted: a password is required: %w", b.Location(), ErrWrongPassword)
	case cfg.Encryption != nil:
		if master, err = cfg.Encryption.unwrap(password, cfg.ID); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", b.Location(), err)
		}
	}
	return newRepo(b, *cfg, master)
}

func newRepo(b backend.Backend, cfg Config, master []byte) (*Repo, error) {
	c, err := newCodec(master, cfg.ID, int(cfg.ChunkSize))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", b.Location(), err)
	}
	host, _ := os.Hostname()
	return &Repo{b: b, cfg: cfg, codec: c, host: host, pid: os.Getpid(),
		lockStale: DefaultLockStale, lockRefresh: DefaultLockRefresh, sweepBatch: 256}, nil
}

// Close releases the codec. It does not close the backend.
func (r *Repo) Close() error {
	r.codec.close()
	return nil
}

// Config returns the repository's config (without key material).
func (r *Repo) Config() Config {
	c := r.cfg
	if c.Encryption != nil {
		e := *c.Encryption
		e.Salt, e.WrappedKey = nil, nil
		c.Encryption = &e
	}
	return c
}

// Encrypted reports whether the repository is encrypted.
func (r *Repo) Encrypted() bool { return r.cfg.Encryption != nil }

// Failpoints (failpoint.Env) at the steps crash tests stop at.
const (
	FailBeforeIndex       = "repo.backup.before-index"           // packs stored, their index not written
	FailBeforeManifest    = "repo.backup.before-manifest"        // packs and index stored, manifest not written
	FailPruneBeforeIndex  = "repo.prune.before-index"            // manifests deleted, repacked packs stored, index not rewritten
	FailPruneBeforeUnlink = "repo.prune.before-index-delete"     // new index written, superseded index objects not deleted
	FailBeforeSweep       = "repo.prune.before-sweep"            // index rewritten, no pack deleted
	FailMidSweep          = "repo.prune.mid-sweep"               // after the first batch of pack deletions
	FailRepackMid         = "repo.prune.repack.after-first-pack" // the first repacked pack stored
)

// SetFailpoints arms crash-test failpoints. Call it right after Open or
// Init, before any other method.
func (r *Repo) SetFailpoints(fp *failpoint.Set) { r.fp = fp }

// Backend is the storage the repository lives in.
func (r *Repo) Backend() backend.Backend { return r.b }
