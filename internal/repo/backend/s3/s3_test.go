package s3

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3/s3test"
)

// testConfig is a Config for a fresh bucket on srv with the given prefix.
func testConfig(srv *s3test.Server, bucket, prefix string) Config {
	return Config{
		Endpoint:  srv.Endpoint,
		Bucket:    bucket,
		Prefix:    prefix,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}
}

// openTest opens a backend on cfg and closes it at the end of the test.
func openTest(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// listAll returns every key under prefix with its size.
func listAll(t *testing.T, b backend.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := b.List(t.Context(), prefix, func(key string, size int64) error {
		got[key] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	b := openTest(t, testConfig(srv, bucket, "/repo/host1/"))
	ctx := t.Context()

	objects := map[string][]byte{
		"config":                bytes.Repeat([]byte("c"), 10),
		"chunks/ab/ab12":        bytes.Repeat([]byte{0xab}, 1<<20+3),
		"chunks/cd/cd34":        {},
		"snapshots/2026-11-25a": []byte("manifest"),
	}
	for k, v := range objects {
		if err := b.Put(ctx, k, v); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	for k, want := range objects {
		got, err := b.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Get(%q) = %d bytes, want %d bytes as put", k, len(got), len(want))
		}
		size, err := b.Size(ctx, k)
		if err != nil {
			t.Fatalf("Size(%q): %v", k, err)
		}
		if size != int64(len(want)) {
			t.Errorf("Size(%q) = %d, want %d", k, size, len(want))
		}
	}

	// The objects live under the prefix in the server's posix tree.
	onDisk, err := os.ReadFile(filepath.Join(srv.Dir, bucket, "repo", "host1", "snapshots", "2026-11-25a"))
	if err != nil {
		t.Fatalf("object not stored under the prefix: %v", err)
	}
	if got, want := string(onDisk), "manifest"; got != want {
		t.Errorf("stored object = %q, want %q", got, want)
	}

	gotAll, wantAll := listAll(t, b, ""), map[string]int64{}
	for k, v := range objects {
		wantAll[k] = int64(len(v))
	}
	if !maps.Equal(gotAll, wantAll) {
		t.Errorf("List(\"\") = %v, want %v", gotAll, wantAll)
	}
	gotChunks := slices.Sorted(maps.Keys(listAll(t, b, "chunks/")))
	if want := []string{"chunks/ab/ab12", "chunks/cd/cd34"}; !slices.Equal(gotChunks, want) {
		t.Errorf("List(\"chunks/\") = %v, want %v", gotChunks, want)
	}

	// Replacing an object.
	if err := b.Put(ctx, "config", []byte("v2")); err != nil {
		t.Fatalf("Put over existing: %v", err)
	}
	if got, err := b.Get(ctx, "config"); err != nil || string(got) != "v2" {
		t.Errorf("Get after replace = %q, %v; want \"v2\"", got, err)
	}

	// Delete, twice: the second is a no-op.
	for range 2 {
		if err := b.Delete(ctx, "chunks/ab/ab12"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := b.Get(ctx, "chunks/ab/ab12"); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Get after Delete: %v, want ErrNotExist", err)
	}
	if got := listAll(t, b, "chunks/"); !maps.Equal(got, map[string]int64{"chunks/cd/cd34": 0}) {
		t.Errorf("List after Delete = %v", got)
	}

	if got, want := b.Location(), "s3://"+bucket+"/repo/host1 ("+srv.Endpoint+")"; got != want {
		t.Errorf("Location() = %q, want %q", got, want)
	}
}

func TestMissingObject(t *testing.T) {
	srv := s3test.Start(t)
	b := openTest(t, testConfig(srv, srv.NewBucket(t), "p"))
	ctx := t.Context()
	_, err := b.Get(ctx, "chunks/00/missing")
	if !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get missing: %v, want ErrNotExist", err)
	}
	t.Logf("Get missing: %v", err)
	if _, err := b.Size(ctx, "chunks/00/missing"); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Size missing: %v, want ErrNotExist", err)
	}
	if err := b.Delete(ctx, "chunks/00/missing"); err != nil {
		t.Errorf("Delete missing: %v, want nil", err)
	}
	if got := listAll(t, b, ""); len(got) != 0 {
		t.Errorf("List of an empty repository = %v", got)
	}
}

func TestBadKeys(t *testing.T) {
	srv := s3test.Start(t)
	b := openTest(t, testConfig(srv, srv.NewBucket(t), ""))
	ctx := t.Context()
	for _, key := range []string{"", "/abs", "a/../b", "a//b", "dir/", "Upper", "sp ace"} {
		if err := b.Put(ctx, key, []byte("x")); !errors.Is(err, backend.ErrBadKey) {
			t.Errorf("Put(%q): %v, want ErrBadKey", key, err)
		}
		if _, err := b.Get(ctx, key); !errors.Is(err, backend.ErrBadKey) {
			t.Errorf("Get(%q): %v, want ErrBadKey", key, err)
		}
		if _, err := b.Size(ctx, key); !errors.Is(err, backend.ErrBadKey) {
			t.Errorf("Size(%q): %v, want ErrBadKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, backend.ErrBadKey) {
			t.Errorf("Delete(%q): %v, want ErrBadKey", key, err)
		}
	}
}

// Two repositories in one bucket under different prefixes do not see
// each other's objects; neither does one at the bucket root list them as
// its own keys unless they are valid keys.
func TestPrefixIsolation(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	a := openTest(t, testConfig(srv, bucket, "a"))
	ab := openTest(t, testConfig(srv, bucket, "ab"))
	ctx := t.Context()
	if err := a.Put(ctx, "config", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := ab.Put(ctx, "config", []byte("ab")); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, a, ""); !maps.Equal(got, map[string]int64{"config": 1}) {
		t.Errorf("List of prefix a = %v, want only its config", got)
	}
	if got, err := ab.Get(ctx, "config"); err != nil || string(got) != "ab" {
		t.Errorf("Get config of prefix ab = %q, %v", got, err)
	}
}

func TestListStopsOnError(t *testing.T) {
	srv := s3test.Start(t)
	b := openTest(t, testConfig(srv, srv.NewBucket(t), "r"))
	ctx := t.Context()
	for i := range 5 {
		if err := b.Put(ctx, fmt.Sprintf("locks/%d", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop here")
	calls := 0
	err := b.List(ctx, "locks/", func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("List returned %v, want fn's error", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after returning an error, want 1", calls)
	}
}

func TestClosed(t *testing.T) {
	srv := s3test.Start(t)
	b, err := Open(t.Context(), testConfig(srv, srv.NewBucket(t), ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Put(t.Context(), "config", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if err := b.List(t.Context(), "", func(string, int64) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}

// An object above minio-go's 16 MiB part size goes up as a multipart
// upload; it must come back identical and be listed once.
func TestMultipartObject(t *testing.T) {
	t.Parallel() // mostly waits; its own server
	srv := s3test.Start(t)
	b := openTest(t, testConfig(srv, srv.NewBucket(t), "")) // root: server temporaries must not show
	data := make([]byte, 17<<20+5)
	for i := range data {
		data[i] = byte(i * 7 >> 3)
	}
	if err := b.Put(t.Context(), "packs/big", data); err != nil {
		t.Fatalf("Put 17 MiB: %v", err)
	}
	got, err := b.Get(t.Context(), "packs/big")
	if err != nil {
		t.Fatalf("Get 17 MiB: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Error("17 MiB object differs after a round trip")
	}
	if got, want := listAll(t, b, ""), map[string]int64{"packs/big": int64(len(data))}; !maps.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}
