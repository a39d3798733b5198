package engine

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/job"
)

// TestJobsSurviveRestart: a finished job is listed, shown and (not)
// cancelled by the next daemon run, and IDs continue.
func TestJobsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	src := filepath.Join(t.TempDir(), "src.img")
	sparseSource(t, src, 4<<20)
	ji, err := e.Import(t.Context(), "imp", ImportOptions{Path: src, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	first := waitJob(t, e, ji.ID)
	if first.State != job.Done {
		t.Fatalf("import %+v", first)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, dir)
	defer e.Close()
	list := e.Jobs(t.Context())
	if len(list) != 1 {
		t.Fatalf("jobs after restart %+v, want the import", list)
	}
	got := list[0]
	if got.ID != first.ID || got.Kind != KindImport || got.Volume != "imp" || got.State != job.Done ||
		got.Done != 4<<20 || got.Total != 4<<20 || got.Finished == nil || !got.Finished.Equal(*first.Finished) ||
		!got.Started.Equal(first.Started) || got.Error != "" {
		t.Errorf("after restart got %+v, want %+v", got, first)
	}
	if in, err := e.Job(t.Context(), first.ID); err != nil || in.State != job.Done {
		t.Errorf("job show of the previous run's job: %+v %v", in, err)
	}
	if in, err := e.CancelJob(t.Context(), first.ID); err != nil || in.State != job.Done {
		t.Errorf("cancel of a finished job: %+v %v, want it returned unchanged", in, err)
	}

	// The next job's ID continues after the previous run's.
	ex, err := e.Export(t.Context(), "imp", ExportOptions{Path: filepath.Join(t.TempDir(), "back.raw")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ex.ID, "2"; got != want {
		t.Errorf("first id of the second run %s, want %s", got, want)
	}
	if in := waitJob(t, e, ex.ID); in.State != job.Done {
		t.Errorf("export %+v", in)
	}
	if got := e.Jobs(t.Context()); len(got) != 2 || got[0].ID != first.ID || got[1].ID != ex.ID {
		t.Errorf("jobs %+v, want the import then the export", got)
	}
}

// TestRunningJobRecordBecomesInterrupted: a record left "running" by a
// killed daemon is shown as interrupted by the next one, ended at its
// start, with what happened.
func TestRunningJobRecordBecomesInterrupted(t *testing.T) {
	dir := t.TempDir()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-time.Minute)
	rec, err := cat.AddJob(catalog.Job{Kind: KindImport, Volume: "lost", State: string(job.Running),
		Done: 1 << 20, Total: 8 << 20, Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Close(); err != nil {
		t.Fatal(err)
	}

	before := time.Now().UTC()
	e := openEngine(t, dir)
	defer e.Close()
	in, err := e.Job(t.Context(), "1")
	if err != nil {
		t.Fatal(err)
	}
	wantErr := "the daemon stopped while the job ran; volume lost is not served: remove it with `extrasphere volume rm lost` and import again"
	if in.ID != "1" || rec.ID != 1 || in.State != job.Interrupted || in.Error != wantErr || in.Done != 1<<20 ||
		in.Finished == nil || in.Finished.Before(before) || in.ETASeconds != nil {
		t.Fatalf("got %+v, want interrupted with %q, ended at this start", in, wantErr)
	}
	if in, err := e.CancelJob(t.Context(), "1"); err != nil || in.State != job.Interrupted {
		t.Errorf("cancel of an interrupted job: %+v %v", in, err)
	}
}
