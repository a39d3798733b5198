package job

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/catalog"
)

func openCatalog(t *testing.T, p string) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// blocker is a job body that reports progress, then waits for cancel.
func blocker(started chan<- struct{}, done int64, detail string) Func {
	return func(ctx context.Context, j *Job) error {
		j.SetDone(done)
		j.SetDetail(detail)
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
}

func TestJobsSurviveRestart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	cat := openCatalog(t, p)
	r := NewRegistry(Options{Store: cat})
	ok, err := r.Start("import", "v1", 100, func(ctx context.Context, j *Job) error { j.Add(100); return nil })
	if err != nil {
		t.Fatal(err)
	}
	bad, err := r.Start("export", "v2", 10, func(ctx context.Context, j *Job) error { j.Add(4); return errors.New("disk on fire") })
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	slow, err := r.Start("migrate", "v3", 1000, blocker(started, 30, "copying layers"))
	if err != nil {
		t.Fatal(err)
	}
	ok.Wait(t.Context())
	bad.Wait(t.Context())
	<-started
	r.Close() // cancels slow
	if err := cat.Close(); err != nil {
		t.Fatal(err)
	}

	cat = openCatalog(t, p)
	defer cat.Close()
	r = NewRegistry(Options{Store: cat})
	defer r.Close()
	list := r.List()
	if len(list) != 3 {
		t.Fatalf("got %d jobs after restart, want 3: %+v", len(list), list)
	}
	want := []struct {
		id, kind, volume string
		state            State
		done, total      int64
		err, detail      string
	}{
		{ok.ID(), "import", "v1", Done, 100, 100, "", ""},
		{bad.ID(), "export", "v2", Failed, 4, 10, "disk on fire", ""},
		{slow.ID(), "migrate", "v3", Cancelled, 30, 1000, "", "copying layers"},
	}
	for i, w := range want {
		g := list[i]
		if g.ID != w.id || g.Kind != w.kind || g.Volume != w.volume || g.State != w.state || g.Done != w.done ||
			g.Total != w.total || g.Error != w.err || g.Detail != w.detail || g.Finished == nil || g.ETASeconds != nil {
			t.Errorf("job %d after restart: got %+v, want %+v", i, g, w)
		}
	}
	// job show of a job from the previous run, and the counter continues.
	if in, err := r.Info(bad.ID()); err != nil || in.State != Failed {
		t.Errorf("info of job %s from the previous run: %+v %v", bad.ID(), in, err)
	}
	j, err := r.Start("import", "v4", 1, func(context.Context, *Job) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.ID(), "4"; got != want {
		t.Errorf("first id after restart %s, want %s", got, want)
	}
	if in, err := r.Wait(t.Context(), j.ID()); err != nil || in.State != Done {
		t.Errorf("wait: %+v %v", in, err)
	}
}

func TestRunningJobBecomesInterrupted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	cat := openCatalog(t, p)
	defer cat.Close()
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	// What a daemon killed during two jobs leaves behind.
	a, err := cat.AddJob(catalog.Job{Kind: "consolidate", Volume: "v1", State: "running", Done: 5, Total: 50, Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cat.AddJob(catalog.Job{Kind: "import", Volume: "v2", State: "running", Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	restart := t0.Add(time.Hour)
	hint := func(kind, volume string) string {
		if kind == "import" {
			return "remove volume " + volume + " and import again"
		}
		return ""
	}
	r := NewRegistry(Options{Store: cat, Now: func() time.Time { return restart }, Interrupted: hint})
	defer r.Close()

	for _, c := range []struct {
		id      uint64
		wantErr string
	}{
		{a.ID, "the daemon stopped while the job ran; see the jobs started after it for the recovery"},
		{b.ID, "the daemon stopped while the job ran; remove volume v2 and import again"},
	} {
		in, err := r.Info(strconv.FormatUint(c.id, 10))
		if err != nil {
			t.Fatal(err)
		}
		if in.State != Interrupted || in.Error != c.wantErr || in.Finished == nil || !in.Finished.Equal(restart) ||
			in.Rate != 0 || in.ETASeconds != nil {
			t.Errorf("job %d: got %+v, want interrupted at %v with %q", c.id, in, restart, c.wantErr)
		}
		// Cancelling it changes nothing and says how it ended.
		if in, err := r.Cancel(in.ID); err != nil || in.State != Interrupted {
			t.Errorf("cancel of interrupted job %d: %+v %v", c.id, in, err)
		}
	}
	// The mark is in the catalog: the next start does not mark it again.
	recs, _, err := cat.Jobs()
	if err != nil || len(recs) != 2 || recs[0].State != "interrupted" || !recs[0].Ended.Equal(restart) ||
		recs[0].Done != 5 || recs[1].State != "interrupted" {
		t.Fatalf("records %+v %v", recs, err)
	}
}

// countingStore counts PutJobs calls.
type countingStore struct {
	*catalog.Catalog
	puts atomic.Int64
}

func (s *countingStore) PutJobs(js []catalog.Job) error {
	s.puts.Add(1)
	return s.Catalog.PutJobs(js)
}

func TestFlushRecordsChangedProgressOnly(t *testing.T) {
	cat := openCatalog(t, filepath.Join(t.TempDir(), "catalog.db"))
	defer cat.Close()
	st := &countingStore{Catalog: cat}
	// A flush interval no test waits for: flush is called directly.
	r := NewRegistry(Options{Store: st, FlushInterval: time.Hour})
	defer r.Close()
	started := make(chan struct{})
	j, err := r.Start("promote", "v", 100, blocker(started, 60, "copying base"))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	r.flush()
	recs, _, err := cat.Jobs()
	if err != nil || len(recs) != 1 || recs[0].Done != 60 || recs[0].Detail != "copying base" || recs[0].State != "running" {
		t.Fatalf("after flush: %+v %v", recs, err)
	}
	before := st.puts.Load()
	r.flush() // nothing changed: no write
	if got := st.puts.Load(); got != before {
		t.Errorf("flush without progress wrote %d times", got-before)
	}
	r.Cancel(j.ID())
	if in, err := r.Wait(t.Context(), j.ID()); err != nil || in.State != Cancelled {
		t.Fatalf("wait: %+v %v", in, err)
	}
	r.flush() // the job has ended: its final record stays
	recs, _, _ = cat.Jobs()
	if len(recs) != 1 || recs[0].State != "cancelled" || recs[0].Ended.IsZero() {
		t.Fatalf("after end: %+v", recs)
	}
}

func TestFlusherRecordsProgress(t *testing.T) {
	cat := openCatalog(t, filepath.Join(t.TempDir(), "catalog.db"))
	defer cat.Close()
	r := NewRegistry(Options{Store: cat, FlushInterval: time.Millisecond})
	defer r.Close()
	started := make(chan struct{})
	if _, err := r.Start("import", "v", 100, blocker(started, 42, "")); err != nil {
		t.Fatal(err)
	}
	<-started
	for {
		recs, _, err := cat.Jobs()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 && recs[0].Done == 42 {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatal("progress never recorded")
		case <-time.After(time.Millisecond):
		}
	}
}

// brokenStore cannot be read.
type brokenStore struct{ countingStore }

func (*brokenStore) Jobs() ([]catalog.Job, []error, error) { return nil, nil, errors.New("read error") }

func TestUnreadableStoreRunsInMemory(t *testing.T) {
	cat := openCatalog(t, filepath.Join(t.TempDir(), "catalog.db"))
	defer cat.Close()
	st := &brokenStore{countingStore{Catalog: cat}}
	r := NewRegistry(Options{Store: st})
	defer r.Close()
	j, err := r.Start("import", "v", 1, func(context.Context, *Job) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if in, err := r.Wait(t.Context(), j.ID()); err != nil || in.State != Done || in.ID != "1" {
		t.Fatalf("job %+v %v", in, err)
	}
	if got := st.puts.Load(); got != 0 {
		t.Errorf("%d writes to a store that could not be read", got)
	}
}

func TestFinishedJobsArePruned(t *testing.T) {
	r := NewRegistry(Options{Keep: 3})
	defer r.Close()
	for range 5 {
		j, err := r.Start("export", "v", 0, func(context.Context, *Job) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		r.Wait(t.Context(), j.ID())
	}
	var ids []string
	for _, in := range r.List() {
		ids = append(ids, in.ID)
	}
	if got, want := strings.Join(ids, ","), "3,4,5"; got != want {
		t.Fatalf("listed %s, want %s", got, want)
	}
	if _, err := r.Info("1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned job: got %v, want ErrNotFound", err)
	}
}
