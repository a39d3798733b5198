package catalog

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Stream epochs: every connection session a mirror opens to a replica
// carries an epoch, and the replica admits writes only from the newest
// session it saw (internal/fence). The epochs a node issues must grow
// across restarts, so the last one is kept here:
//
//	stream_epochs  "last" -> 8 bytes big-endian
//
// An older build ignores the bucket (Format did not change).
var (
	bucketStreamEpochs = []byte("stream_epochs")
	keyLastEpoch       = []byte("last")
)

// NextStreamEpoch returns a new stream epoch, durably larger than every
// one returned before, and at least floor (the caller passes the clock, so
// that epochs keep growing even if this catalog was lost and recreated).
func (c *Catalog) NextStreamEpoch(floor uint64) (uint64, error) {
	var next uint64
	err := c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStreamEpochs)
		if err != nil {
			return err
		}
		var last uint64
		if v := b.Get(keyLastEpoch); len(v) == 8 {
			last = binary.BigEndian.Uint64(v)
		}
		next = max(last+1, floor)
		return b.Put(keyLastEpoch, binary.BigEndian.AppendUint64(nil, next))
	})
	if err != nil {
		return 0, fmt.Errorf("issue a stream epoch: %w", err)
	}
	return next, nil
}
