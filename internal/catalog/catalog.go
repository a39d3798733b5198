// Package catalog is the daemon's embedded metadata store: a bbolt file at
// $DATA/catalog.db.
//
// Volumes are never recorded here; they are rediscovered from their
// descriptor files at every start. The list of datastores (name -> path)
// can be rebuilt from the datastores themselves; the other records
// (mirrors, replicas, repositories, NBD clients) cannot, and say below
// what losing them costs. If catalog.db is lost, start the daemon (the default
// datastore is recreated from $DATA/datastores/default) and re-add every
// other datastore path with `extrasphere datastore add NAME PATH`: the
// marker file in PATH gives back its identity and Scan gives back its
// volumes.
//
// Layout (bbolt buckets):
//
//	meta        "format" -> "extrasphere-catalog/1"   (must not change)
//	datastores  <name>   -> JSON {"path","uuid","added"}
//	jobs        <id as 8 bytes big-endian> -> JSON Job (see jobs.go);
//	            the bucket's sequence is the last job ID issued
//	nbd_clients <name> -> JSON Client (see clients.go)
//	stream_epochs "last" -> 8 bytes big-endian: the last mirror stream
//	            epoch issued (epochs.go)
//	mirrors     <volume> -> JSON Mirror (mirrors.go): a mirror's source side
//	replicas    <volume> -> JSON Replica (mirrors.go): a replica held here
//	repos       <name> -> JSON Repo (repos.go): a backup repository
//
// Mirror and replica records are what ties a volume to its peer: losing
// them stops the mirrors (the data on both sides stays; create the mirror
// again, which resyncs in full). A repository record is its location and
// credentials: add the repository again (`repo add`, without --init).
//
// Job records are history, not state: losing them loses only the job
// list (the engine recovers interrupted operations from the datastores).
// An older build that knows no "jobs" bucket ignores it, so adding it did
// not change Format.
//
// NBD client records are the one thing here that no datastore can give
// back: they are who may open which volume over TCP. Losing them locks
// every TCP client out (it fails closed); add the clients again with
// `extrasphere client add`.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Format is the value of meta/format this build writes and reads. Must not change.
const Format = "extrasphere-catalog/1"

var (
	bucketMeta       = []byte("meta")
	bucketDatastores = []byte("datastores")
	keyFormat        = []byte("format")
)

// lockTimeout bounds the wait for the file lock another daemon holds.
const lockTimeout = 2 * time.Second

// Sentinel errors.
var (
	// ErrLocked: another process (another extrasphere serve on the same
	// data dir) holds the catalog.
	ErrLocked = errors.New("catalog is locked by another process")
	// ErrFormat: the catalog was written by an unknown format version.
	ErrFormat = errors.New("unknown catalog format")
	// ErrNotFound: no datastore of that name in the catalog.
	ErrNotFound = errors.New("not in the catalog")
	// ErrExists: a record of that name is already in the catalog
	// (AddClient).
	ErrExists = errors.New("already in the catalog")
)

// Datastore is one datastore record.
type Datastore struct {
	Name  string    `json:"-"` // the key
	Path  string    `json:"path"`
	UUID  string    `json:"uuid"`
	Added time.Time `json:"added"`
}

// Catalog is an open catalog. Its methods are safe for concurrent use
// (bbolt serializes writers).
type Catalog struct {
	db       *bolt.DB
	keepJobs int // finished job records kept: KeepFinishedJobs (tests lower it)
}

// Open opens or creates the catalog at path.
func Open(path string) (*Catalog, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open catalog %s: %w (is another extrasphere serve running on this data dir?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := meta.Get(keyFormat); {
		case f == nil:
			if err := meta.Put(keyFormat, []byte(Format)); err != nil {
				return err
			}
		case string(f) != Format:
			return fmt.Errorf("format %q, this build reads %q: %w", f, Format, ErrFormat)
		}
		if _, err := tx.CreateBucketIfNotExists(bucketDatastores); err != nil {
			return err
		}
		_, err = tx.CreateBucketIfNotExists(bucketJobs)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	return &Catalog{db: db, keepJobs: KeepFinishedJobs}, nil
}

// Close closes the catalog file.
func (c *Catalog) Close() error { return c.db.Close() }

// PutDatastore inserts or replaces a datastore record.
func (c *Catalog) PutDatastore(d Datastore) error {
	v, err := json.Marshal(&d)
	if err != nil {
		return fmt.Errorf("put datastore %s: %w", d.Name, err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDatastores).Put([]byte(d.Name), v)
	})
	if err != nil {
		return fmt.Errorf("put datastore %s: %w", d.Name, err)
	}
	return nil
}

// DeleteDatastore removes a datastore record; ErrNotFound if absent.
func (c *Catalog) DeleteDatastore(name string) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatastores)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete datastore %s: %w", name, err)
	}
	return nil
}

// Datastores returns every record, sorted by name.
func (c *Catalog) Datastores() ([]Datastore, error) {
	var out []Datastore
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDatastores).ForEach(func(k, v []byte) error {
			var d Datastore
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode datastore %s: %w", k, err)
			}
			d.Name = string(k)
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list datastores: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
