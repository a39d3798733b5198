package catalog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func openTest(t *testing.T, p string) *Catalog {
	t.Helper()
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addJob(t *testing.T, c *Catalog, kind, vol string) Job {
	t.Helper()
	j, err := c.AddJob(Job{Kind: kind, Volume: vol, State: "running", Total: 100, Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJobsPersistAndCounterContinues(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c := openTest(t, p)
	a := addJob(t, c, "import", "v1")
	b := addJob(t, c, "migrate", "v2")
	if got, want := [2]uint64{a.ID, b.ID}, [2]uint64{1, 2}; got != want {
		t.Fatalf("ids %v, want %v", got, want)
	}
	b.State, b.Done, b.Ended, b.Error, b.Detail = "failed", 40, t0.Add(time.Minute), "boom", "copying layers"
	if err := c.PutJobs([]Job{b}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = openTest(t, p)
	defer c.Close()
	got, bad, err := c.Jobs()
	if err != nil || len(bad) != 0 {
		t.Fatalf("jobs: %v %v", bad, err)
	}
	want := []Job{a, b}
	if len(got) != 2 {
		t.Fatalf("got %d records, want 2: %+v", len(got), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Kind != w.Kind || g.Volume != w.Volume || g.State != w.State || g.Done != w.Done ||
			g.Total != w.Total || !g.Started.Equal(w.Started) || !g.Ended.Equal(w.Ended) || g.Error != w.Error ||
			g.Detail != w.Detail || g.Version != JobVersion {
			t.Errorf("record %d: got %+v, want %+v", i, g, w)
		}
	}
	if got[0].Finished() || !got[1].Finished() {
		t.Errorf("finished: %v %v, want false true", got[0].Finished(), got[1].Finished())
	}
	// The counter survived the reopen: no ID is issued twice.
	if got, want := addJob(t, c, "export", "v1").ID, uint64(3); got != want {
		t.Fatalf("id after reopen %d, want %d", got, want)
	}
}

func TestJobsPrune(t *testing.T) {
	c := openTest(t, filepath.Join(t.TempDir(), "catalog.db"))
	defer c.Close()
	c.keepJobs = 3
	var all []Job
	for range 6 {
		all = append(all, addJob(t, c, "import", "v"))
	}
	// Job 1 keeps running; 2..6 finish, in one batch.
	var fin []Job
	for _, j := range all[1:] {
		j.State, j.Ended = "done", t0.Add(time.Second)
		fin = append(fin, j)
	}
	if err := c.PutJobs(fin); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, j := range got {
		ids = append(ids, j.ID)
	}
	// The running job stays; of the finished ones the newest 3 do.
	if g, w := len(ids), 4; g != w || ids[0] != 1 || ids[1] != 4 || ids[2] != 5 || ids[3] != 6 {
		t.Fatalf("ids after prune %v, want [1 4 5 6]", ids)
	}
	// Pruned IDs are not reissued.
	if got, want := addJob(t, c, "import", "v").ID, uint64(7); got != want {
		t.Fatalf("next id %d, want %d", got, want)
	}
}

func TestJobsRefuseBadRecords(t *testing.T) {
	c := openTest(t, filepath.Join(t.TempDir(), "catalog.db"))
	defer c.Close()
	j := addJob(t, c, "import", "v")
	if err := c.PutJobs([]Job{{ID: 9, Kind: "import", State: "done", Started: t0}}); !errors.Is(err, ErrJobRecord) {
		t.Errorf("put of an id never issued: got %v, want ErrJobRecord", err)
	}
	j.Kind = ""
	if err := c.PutJobs([]Job{j}); !errors.Is(err, ErrJobRecord) {
		t.Errorf("put without kind: got %v, want ErrJobRecord", err)
	}
	// A record this build cannot read is reported, the others still list.
	addJob(t, c, "export", "v")
	err := c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put(jobKey(1), []byte(`{"v":99}`)) })
	if err != nil {
		t.Fatal(err)
	}
	got, bad, err := c.Jobs()
	if err != nil || len(got) != 1 || got[0].ID != 2 || len(bad) != 1 || !errors.Is(bad[0], ErrJobRecord) {
		t.Fatalf("jobs %+v bad %v err %v, want job 2 and one ErrJobRecord", got, bad, err)
	}
}
