package catalog

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// JobVersion is the "v" of every job record this build writes; it reads
// only this version. Must not change (a new layout takes a new number).
const JobVersion = 1

// KeepFinishedJobs is how many finished job records the catalog keeps:
// writing a finished record deletes the oldest finished ones beyond it.
// Running records are never pruned.
const KeepFinishedJobs = 200

var bucketJobs = []byte("jobs")

// ErrJobRecord: a job record that is not valid (see Job.Validate).
var ErrJobRecord = errors.New("invalid job record")

// Job is one persisted job: bucket "jobs", key the ID as 8 bytes
// big-endian (so keys sort by ID), value this struct as JSON. The
// bucket's sequence is the last ID issued; IDs are never reused, even
// after their records are pruned. The job package owns the meaning of
// Kind, State and Detail; the catalog only requires them non-empty
// (Detail may be empty) and treats a record with a non-zero Ended as
// finished.
type Job struct {
	Version int       `json:"v"` // JobVersion; set by AddJob and PutJobs
	ID      uint64    `json:"id"`
	Kind    string    `json:"kind"`
	Volume  string    `json:"volume"`
	State   string    `json:"state"`
	Done    int64     `json:"done"`
	Total   int64     `json:"total"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"` // zero while the job runs
	Error   string    `json:"error,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Finished reports whether the record is of an ended job.
func (j *Job) Finished() bool { return !j.Ended.IsZero() }

// Validate checks a record read from or about to be written to the
// catalog.
func (j *Job) Validate() error {
	switch {
	case j.Version != JobVersion:
		return fmt.Errorf("job %d: version %d, this build reads %d: %w", j.ID, j.Version, JobVersion, ErrJobRecord)
	case j.ID == 0:
		return fmt.Errorf("job id 0: %w", ErrJobRecord)
	case j.Kind == "" || j.State == "":
		return fmt.Errorf("job %d: empty kind or state: %w", j.ID, ErrJobRecord)
	case j.Started.IsZero():
		return fmt.Errorf("job %d: no start time: %w", j.ID, ErrJobRecord)
	case j.Done < 0 || j.Total < 0:
		return fmt.Errorf("job %d: negative progress %d of %d: %w", j.ID, j.Done, j.Total, ErrJobRecord)
	case j.Finished() && j.Ended.Before(j.Started):
		return fmt.Errorf("job %d: ended before it started: %w", j.ID, ErrJobRecord)
	}
	return nil
}

func jobKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// AddJob records a new job under the next ID (the bucket's sequence,
// which survives restarts) and returns the record with its ID. The
// record is durable when AddJob returns.
func (c *Catalog) AddJob(j Job) (Job, error) {
	j.Version = JobVersion
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		j.ID = id
		return putJob(b, &j)
	})
	if err != nil {
		return Job{}, fmt.Errorf("add %s job on %s: %w", j.Kind, j.Volume, err)
	}
	return j, nil
}

// PutJobs replaces existing job records in one transaction (IDs must
// have been issued by AddJob). When one of them is finished, the oldest
// finished records beyond KeepFinishedJobs are deleted.
func (c *Catalog) PutJobs(jobs []Job) error {
	if len(jobs) == 0 {
		return nil
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		prune := false
		for i := range jobs {
			j := jobs[i]
			j.Version = JobVersion
			if j.ID > b.Sequence() {
				return fmt.Errorf("job %d: id never issued (last is %d): %w", j.ID, b.Sequence(), ErrJobRecord)
			}
			if err := putJob(b, &j); err != nil {
				return err
			}
			prune = prune || j.Finished()
		}
		if prune {
			return pruneJobs(b, c.keepJobs)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put job records: %w", err)
	}
	return nil
}

func putJob(b *bolt.Bucket, j *Job) error {
	if err := j.Validate(); err != nil {
		return err
	}
	v, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job %d: %w", j.ID, err)
	}
	return b.Put(jobKey(j.ID), v)
}

// pruneJobs deletes the oldest finished records beyond keep. A record
// that does not decode counts as finished: nothing can resume it.
func pruneJobs(b *bolt.Bucket, keep int) error {
	var finished [][]byte
	err := b.ForEach(func(k, v []byte) error {
		j, err := decodeJob(k, v)
		if err != nil || j.Finished() {
			finished = append(finished, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for len(finished) > keep {
		if err := b.Delete(finished[0]); err != nil {
			return err
		}
		finished = finished[1:]
	}
	return nil
}

func decodeJob(k, v []byte) (Job, error) {
	var j Job
	if len(k) != 8 {
		return Job{}, fmt.Errorf("job key %x: not 8 bytes: %w", k, ErrJobRecord)
	}
	if err := json.Unmarshal(v, &j); err != nil {
		return Job{}, fmt.Errorf("decode job %d: %w", binary.BigEndian.Uint64(k), err)
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	if j.ID != binary.BigEndian.Uint64(k) {
		return Job{}, fmt.Errorf("job under key %d says id %d: %w", binary.BigEndian.Uint64(k), j.ID, ErrJobRecord)
	}
	return j, nil
}

// Jobs returns every valid job record, oldest (lowest ID) first, and one
// error for each record that could not be read (they are left in place
// and pruned like finished records). err is set only when the bucket
// itself cannot be read.
func (c *Catalog) Jobs() (jobs []Job, bad []error, err error) {
	err = c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			j, err := decodeJob(k, v)
			if err != nil {
				bad = append(bad, err)
				return nil
			}
			jobs = append(jobs, j)
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list jobs: %w", err)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].ID < jobs[b].ID })
	return jobs, bad, nil
}
