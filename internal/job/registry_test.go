package job

import (
	"context"
	"errors"
	"testing"
)

func TestJobOutcomes(t *testing.T) {
	r := NewRegistry(Options{})
	defer r.Close()

	ok, err := r.Start("import", "v1", 100, func(ctx context.Context, j *Job) error {
		j.Add(40)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	bad, _ := r.Start("export", "v2", 10, func(ctx context.Context, j *Job) error { return boom })
	started := make(chan struct{})
	slow, _ := r.Start("import", "v3", 10, func(ctx context.Context, j *Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})

	if err := ok.Wait(t.Context()); err != nil {
		t.Fatalf("ok job: %v", err)
	}
	if err := bad.Wait(t.Context()); !errors.Is(err, boom) {
		t.Fatalf("bad job: got %v, want boom", err)
	}
	<-started
	if _, err := r.Cancel(slow.ID()); err != nil {
		t.Fatal(err)
	}
	if err := slow.Wait(t.Context()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job: got %v", err)
	}

	got := r.List()
	if len(got) != 3 {
		t.Fatalf("got %d jobs, want 3", len(got))
	}
	byID := map[string]Info{}
	for _, in := range got {
		byID[in.ID] = in
	}
	if in := byID[ok.ID()]; in.State != Done || in.Done != 100 || in.Total != 100 || in.Finished == nil {
		t.Errorf("done job info %+v", in)
	}
	if in := byID[bad.ID()]; in.State != Failed || in.Error != "boom" {
		t.Errorf("failed job info %+v", in)
	}
	if in := byID[slow.ID()]; in.State != Cancelled || in.Error != "" {
		t.Errorf("cancelled job info %+v", in)
	}
	if _, err := r.Info("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get unknown: %v", err)
	}
}

func TestCloseCancelsRunning(t *testing.T) {
	r := NewRegistry(Options{})
	started := make(chan struct{})
	j, _ := r.Start("import", "v", 1, func(ctx context.Context, j *Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	r.Close()
	if got, want := j.Info().State, Cancelled; got != want {
		t.Fatalf("state %s, want %s", got, want)
	}
	if _, err := r.Start("import", "v", 1, func(context.Context, *Job) error { return nil }); err == nil {
		t.Fatal("start after close succeeded")
	}
}
