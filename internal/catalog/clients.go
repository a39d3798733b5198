package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketClients = []byte("nbd_clients")

// Client is one NBD client allowed over TCP with TLS: the holder of the
// certificate whose fingerprint is Fingerprint may list and open Volumes,
// and write to them unless ReadOnly. Deleting the record revokes the
// certificate: the daemon looks the record up at every handshake.
type Client struct {
	Name        string    `json:"-"` // the key
	Volumes     []string  `json:"volumes"`
	ReadOnly    bool      `json:"read_only,omitempty"`
	Serial      string    `json:"serial"`      // the certificate's serial number, hex
	Fingerprint string    `json:"fingerprint"` // "SHA256:" + hex of the certificate's DER
	NotAfter    time.Time `json:"not_after"`   // the certificate's expiry
	Added       time.Time `json:"added"`
}

// AddClient inserts a client record; ErrExists if the name is taken.
func (c *Catalog) AddClient(cl Client) error {
	v, err := json.Marshal(&cl)
	if err != nil {
		return fmt.Errorf("add NBD client %s: %w", cl.Name, err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketClients)
		if err != nil {
			return err
		}
		if b.Get([]byte(cl.Name)) != nil {
			return ErrExists
		}
		return b.Put([]byte(cl.Name), v)
	})
	if err != nil {
		return fmt.Errorf("add NBD client %s: %w", cl.Name, err)
	}
	return nil
}

// DeleteClient removes a client record; ErrNotFound if absent.
func (c *Catalog) DeleteClient(name string) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClients)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("remove NBD client %s: %w", name, err)
	}
	return nil
}

// Clients returns every client record, sorted by name.
func (c *Catalog) Clients() ([]Client, error) {
	var out []Client
	err := c.db.View(func(tx *bolt.Tx) error {
		return forEachClient(tx, func(cl Client) bool {
			out = append(out, cl)
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list NBD clients: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ClientByFingerprint returns the client whose certificate has fingerprint
// fp; ErrNotFound if none (never issued, or revoked).
func (c *Catalog) ClientByFingerprint(fp string) (Client, error) {
	var found Client
	ok := false
	err := c.db.View(func(tx *bolt.Tx) error {
		return forEachClient(tx, func(cl Client) bool {
			if cl.Fingerprint == fp {
				found, ok = cl, true
				return false
			}
			return true
		})
	})
	if err != nil {
		return Client{}, fmt.Errorf("look up NBD client %s: %w", fp, err)
	}
	if !ok {
		return Client{}, fmt.Errorf("look up NBD client %s: %w", fp, ErrNotFound)
	}
	return found, nil
}

// forEachClient calls f for every record until f returns false.
func forEachClient(tx *bolt.Tx, f func(Client) bool) error {
	b := tx.Bucket(bucketClients)
	if b == nil {
		return nil
	}
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		var cl Client
		if err := json.Unmarshal(v, &cl); err != nil {
			return fmt.Errorf("decode NBD client %s: %w", k, err)
		}
		cl.Name = string(k)
		if !f(cl) {
			return nil
		}
	}
	return nil
}
