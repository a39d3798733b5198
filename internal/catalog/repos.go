package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketRepos = []byte("repos")

// Repo is one backup repository the daemon knows. Secrets: the password
// stays in PasswordFile (read when the repository is opened); S3 keys, if
// given here rather than in the daemon's environment, are stored in this
// record (the catalog file is mode 0600).
type Repo struct {
	Name         string    `json:"-"`        // the key
	Location     string    `json:"location"` // a directory, or s3://BUCKET/PREFIX
	Endpoint     string    `json:"endpoint,omitempty"`
	Insecure     bool      `json:"insecure,omitempty"` // plain HTTP to the endpoint
	Region       string    `json:"region,omitempty"`
	AccessKey    string    `json:"access_key,omitempty"`
	SecretKey    string    `json:"secret_key,omitempty"`
	PasswordFile string    `json:"password_file,omitempty"`
	Added        time.Time `json:"added"`
}

// PutRepo inserts or replaces a repository record.
func (c *Catalog) PutRepo(r Repo) error {
	v, err := json.Marshal(&r)
	if err != nil {
		return fmt.Errorf("put repository %s: %w", r.Name, err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRepos)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.Name), v)
	})
	if err != nil {
		return fmt.Errorf("put repository %s: %w", r.Name, err)
	}
	return nil
}

// DeleteRepo removes a repository record; ErrNotFound if absent.
func (c *Catalog) DeleteRepo(name string) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRepos)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete repository %s: %w", name, err)
	}
	return nil
}

// Repos returns every repository record, sorted by name.
func (c *Catalog) Repos() ([]Repo, error) {
	var out []Repo
	err := c.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRepos)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r Repo
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode repository %s: %w", k, err)
			}
			r.Name = string(k)
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
