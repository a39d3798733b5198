package repos

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
)

// openRegistry opens the catalog at catPath and a registry over it; stop
// closes both (as a daemon's stop does), at the latest at the test's end.
func openRegistry(t *testing.T, catPath string) (g *Registry, stop func()) {
	t.Helper()
	cat, err := catalog.Open(catPath)
	if err != nil {
		t.Fatal(err)
	}
	g, err = Open(cat, slog.New(slog.DiscardHandler), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { g.Close(); cat.Close() }) }
	t.Cleanup(stop)
	return g, stop
}

// The life of a record: refused with a named error when wrong, created
// and opened by Add, known again after a restart and opened on first use,
// and forgotten by Remove (its data stays).
func TestRegistry(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	catPath := filepath.Join(dir, "catalog.db")
	g, stop := openRegistry(t, catPath)

	if _, err := g.Use(ctx, ""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "repo init") {
		t.Fatalf("Use of no default = %v, want ErrNotFound saying how to create one", err)
	}
	for _, req := range []apischema.RepoRequest{
		{Name: "a/b", Location: dir},
		{Location: "relative/dir", Init: true},
		{Location: dir, PasswordFile: "pw"},
	} {
		if _, err := g.Add(ctx, req); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Add(%+v) = %v, want ErrInvalidArgument", req, err)
		}
	}
	if _, err := g.Add(ctx, apischema.RepoRequest{Location: filepath.Join(dir, "none")}); !errors.Is(err, ErrRepo) {
		t.Fatalf("Add of a directory that is no repository = %v, want ErrRepo", err)
	}

	loc := filepath.Join(dir, "repo")
	in, err := g.Add(ctx, apischema.RepoRequest{Location: loc + "/", Init: true})
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != apischema.DefaultRepo || in.Location != loc || in.ID == "" || in.Error != "" {
		t.Fatalf("Add = %+v", in)
	}
	if _, err := g.Add(ctx, apischema.RepoRequest{Location: loc}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Add = %v, want ErrExists", err)
	}
	if _, err := g.Add(ctx, apischema.RepoRequest{Name: "again", Location: loc, Init: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("Init over a repository = %v, want ErrExists", err)
	}
	stop()

	// After a restart the record opens on first use.
	g, stop = openRegistry(t, catPath)
	r, err := g.Use(ctx, "")
	if err != nil || r.Config().ID != in.ID {
		t.Fatalf("Use after restart: %v", err)
	}
	if l := g.List(ctx); len(l) != 1 || l[0] != in {
		t.Fatalf("List = %+v, want [%+v]", l, in)
	}
	if err := g.Remove(apischema.DefaultRepo); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(apischema.DefaultRepo); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(loc); err != nil {
		t.Fatalf("Remove touched the repository's data: %v", err)
	}
	stop()
	if g, _ = openRegistry(t, catPath); len(g.List(ctx)) != 0 {
		t.Fatalf("List after Remove and restart = %+v", g.List(ctx))
	}
}

// A record whose repository cannot be opened stays known and says why.
func TestRegistryListsWhatCannotOpen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	catPath := filepath.Join(dir, "catalog.db")
	g, stop := openRegistry(t, catPath)
	loc := filepath.Join(dir, "repo")
	if _, err := g.Add(ctx, apischema.RepoRequest{Name: "r", Location: loc, Init: true}); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := os.RemoveAll(loc); err != nil {
		t.Fatal(err)
	}
	g, _ = openRegistry(t, catPath)
	l := g.List(ctx)
	if len(l) != 1 || l[0].Name != "r" || l[0].Error == "" {
		t.Fatalf("List = %+v, want r with its error", l)
	}
	if _, err := g.Use(ctx, "r"); !errors.Is(err, ErrRepo) {
		t.Fatalf("Use = %v, want ErrRepo", err)
	}
}

// A repository that does not answer (an S3 endpoint that accepts and
// never replies) holds up neither the other repositories nor Add, and a
// caller waiting for it gives up when its ctx ends.
func TestRegistryOpenDoesNotBlockOthers(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	catPath := filepath.Join(dir, "catalog.db")
	g, stop := openRegistry(t, catPath)
	if _, err := g.Add(ctx, apischema.RepoRequest{Name: "fast", Location: filepath.Join(dir, "fast"), Init: true}); err != nil {
		t.Fatal(err)
	}
	stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 64) // one per connection
	var conns []net.Conn
	var connsMu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c) // held open, never answered
			connsMu.Unlock()
			accepted <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		defer connsMu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	cat, err := catalog.Open(catPath)
	if err != nil {
		t.Fatal(err)
	}
	slow := catalog.Repo{Name: "slow", Location: "s3://bucket/prefix", Endpoint: ln.Addr().String(), Insecure: true,
		Region: "us-east-1", AccessKey: "key", SecretKey: "secret", Added: time.Now()}
	if err := cat.PutRepo(slow); err != nil {
		t.Fatal(err)
	}
	cat.Close()

	g, _ = openRegistry(t, catPath)
	slowCtx, cancelSlow := context.WithCancel(ctx)
	defer cancelSlow()
	slowErr := useAsync(slowCtx, g, "slow")
	<-accepted // the open of "slow" is waiting for the endpoint now

	if _, err := g.Use(ctx, "fast"); err != nil {
		t.Fatalf("Use(fast) while slow opens: %v", err)
	}
	if _, err := g.Add(ctx, apischema.RepoRequest{Name: "other", Location: filepath.Join(dir, "other"), Init: true}); err != nil {
		t.Fatalf("Add while slow opens: %v", err)
	}
	// An Add that waits for the endpoint holds its name: a second Add of
	// it is refused at once, and says why.
	addCtx, cancelAdd := context.WithCancel(ctx)
	defer cancelAdd()
	addErr := make(chan error, 1)
	go func() {
		_, err := g.Add(addCtx, apischema.RepoRequest{Name: "slow2", Location: "s3://bucket/other",
			Endpoint: ln.Addr().String(), Insecure: true, Region: "us-east-1", AccessKey: "key", SecretKey: "secret"})
		addErr <- err
	}()
	<-accepted // that Add is waiting for the endpoint
	if _, err := g.Add(ctx, apischema.RepoRequest{Name: "slow2", Location: filepath.Join(dir, "slow2"), Init: true}); !errors.Is(err, ErrExists) ||
		!strings.Contains(err.Error(), "being added") {
		t.Fatalf("Add of a name being added = %v, want ErrExists saying it is being added", err)
	}
	cancelAdd()
	if err := <-addErr; !errors.Is(err, ErrRepo) {
		t.Fatalf("the waiting Add, cancelled = %v, want ErrRepo", err)
	}

	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Use(ended, "slow"); !errors.Is(err, ErrRepo) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Use(slow) with an ended ctx = %v, want ErrRepo wrapping context.Canceled", err)
	}
	l := g.List(ended)
	if len(l) != 3 || l[0].Name != "fast" || l[0].Error != "" || l[1].Name != "other" || l[1].Error != "" ||
		l[2].Name != "slow" || !strings.Contains(l[2].Error, "gave up waiting") {
		t.Fatalf("List with an ended ctx while slow opens = %+v", l)
	}

	// A caller still waiting when the opener gives up does not take the
	// opener's cancellation for an answer: it opens again itself.
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	waitErr := useAsync(waitCtx, g, "slow")
	cancelSlow()
	if err := <-slowErr; !errors.Is(err, ErrRepo) {
		t.Fatalf("the slow open, cancelled = %v, want ErrRepo", err)
	}
	<-accepted // the waiter's own open reached the endpoint
	cancelWait()
	if err := <-waitErr; !errors.Is(err, ErrRepo) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiter, cancelled = %v, want ErrRepo wrapping context.Canceled", err)
	}
	if err := g.Remove("slow"); err != nil {
		t.Fatal(err)
	}
}

// useAsync runs g.Use(ctx, name) in a goroutine; its error comes on the
// channel.
func useAsync(ctx context.Context, g *Registry, name string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := g.Use(ctx, name)
		errc <- err
	}()
	return errc
}
