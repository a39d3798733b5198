package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMirrors  = []byte("mirrors")
	bucketReplicas = []byte("replicas")
)

// Mirror is the source side of a volume's mirror, keyed by the volume.
type Mirror struct {
	Volume  string    `json:"-"`
	Target  string    `json:"target"` // as the user gave it: extrasphere://, nbd://, nbd+unix://, file://
	Mode    string    `json:"mode"`   // "sync"
	Policy  string    `json:"policy"` // "degrade" | "block"
	Gen     string    `json:"gen"`    // generation id shared with the replica (extrasphere targets)
	Created time.Time `json:"created"`
	// PeerFingerprint and PeerAddr name the other node (extrasphere targets).
	PeerFingerprint string `json:"peer_fingerprint,omitempty"`
	PeerAddr        string `json:"peer_addr,omitempty"`
	PeerVolume      string `json:"peer_volume,omitempty"`
	PeerNBDAddr     string `json:"peer_nbd_addr,omitempty"` // host:port of the peer's NBD TCP listener
	// Synced: the first full copy completed once.
	Synced bool `json:"synced"`
	// Diverged: since Gen's replica last held everything, this side
	// acknowledged writes the replica may lack. Set before the first such
	// write is acknowledged; cleared when the mirror is back in sync.
	Diverged bool `json:"diverged"`
	Paused   bool `json:"paused,omitempty"`
	// Insecure: a plain-TCP NBD target on another host, named explicitly.
	Insecure bool `json:"insecure,omitempty"`
}

// Replica is the target side: a volume another node mirrors into.
type Replica struct {
	Volume         string    `json:"-"`
	SourceNode     string    `json:"source_node"` // fingerprint of the node that writes
	SourceName     string    `json:"source_name"`
	SourceAddr     string    `json:"source_addr,omitempty"`
	SourceVolume   string    `json:"source_volume"`
	Gen            string    `json:"gen"`
	Created        time.Time `json:"created"`
	FailedOver     time.Time `json:"failed_over,omitzero"` // set by failover: the volume is writable here
	FailoverBitmap string    `json:"failover_bitmap,omitempty"`
	NewGen         string    `json:"new_gen,omitempty"` // the generation failover started
}

// PutMirror inserts or replaces a mirror record (durable on return).
func (c *Catalog) PutMirror(m Mirror) error { return c.put(bucketMirrors, "mirror", m.Volume, &m) }

// DeleteMirror removes a mirror record; ErrNotFound if absent.
func (c *Catalog) DeleteMirror(vol string) error { return c.del(bucketMirrors, "mirror", vol) }

// Mirrors returns every mirror record, by volume.
func (c *Catalog) Mirrors() ([]Mirror, error) {
	var out []Mirror
	err := c.each(bucketMirrors, func(k string, v []byte) error {
		var m Mirror
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode mirror of %s: %w", k, err)
		}
		m.Volume = k
		out = append(out, m)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out, err
}

// PutReplica inserts or replaces a replica record.
func (c *Catalog) PutReplica(r Replica) error { return c.put(bucketReplicas, "replica", r.Volume, &r) }

// DeleteReplica removes a replica record; ErrNotFound if absent.
func (c *Catalog) DeleteReplica(vol string) error { return c.del(bucketReplicas, "replica", vol) }

// Replicas returns every replica record, by volume.
func (c *Catalog) Replicas() ([]Replica, error) {
	var out []Replica
	err := c.each(bucketReplicas, func(k string, v []byte) error {
		var r Replica
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode replica %s: %w", k, err)
		}
		r.Volume = k
		out = append(out, r)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out, err
}

func (c *Catalog) put(bucket []byte, what, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put %s %s: %w", what, key, err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("put %s %s: %w", what, key, err)
	}
	return nil
}

func (c *Catalog) del(bucket []byte, what, key string) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil || b.Get([]byte(key)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", what, key, err)
	}
	return nil
}

func (c *Catalog) each(bucket []byte, fn func(k string, v []byte) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

// BecomeReplica makes vol a replica in one transaction: r is written and
// vol's mirror record (if any) deleted, so a crash never leaves both (the
// old source's side of failback).
func (c *Catalog) BecomeReplica(r Replica) error {
	return c.swap(bucketReplicas, r.Volume, &r, bucketMirrors)
}

// BecomeSource makes vol a mirror source in one transaction: m is written
// and vol's replica record (if any) deleted (the failed-over side of
// failback).
func (c *Catalog) BecomeSource(m Mirror) error {
	return c.swap(bucketMirrors, m.Volume, &m, bucketReplicas)
}

// swap puts v under key in bucket put and deletes key from bucket del, in
// one transaction.
func (c *Catalog) swap(put []byte, key string, v any, del []byte) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record the new role of %s: %w", key, err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(put)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(key), data); err != nil {
			return err
		}
		if d := tx.Bucket(del); d != nil {
			return d.Delete([]byte(key))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the new role of %s: %w", key, err)
	}
	return nil
}
