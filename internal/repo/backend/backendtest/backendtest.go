// Package backendtest is the conformance suite every backup repository
// backend runs (restic's backend/test, litestream's replica-client suite):
// Run(t, open) with open returning a fresh, empty backend per call.
//
// The suite uses only the backend.Backend interface, so it runs the same
// against a directory and a real S3 server.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// Run runs every conformance test. open must return an empty backend; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend.Backend)
	}{
		{"RoundTrip", testRoundTrip},
		{"GetRange", testGetRange},
		{"Overwrite", testOverwrite},
		{"Missing", testMissing},
		{"List", testList},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"BadKeys", testBadKeys},
		{"Concurrent", testConcurrent},
		{"CancelledPut", testCancelledPut},
		{"Location", testLocation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			defer b.Close()
			tc.fn(t, b)
		})
	}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func mustPut(t *testing.T, b backend.Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, data); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", key, len(data), err)
	}
}

func mustGet(t *testing.T, b backend.Backend, key string, want []byte) {
	t.Helper()
	got, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s): %d bytes, want %d (contents differ)", key, len(got), len(want))
	}
}

// listAll returns key -> size for prefix.
func listAll(t *testing.T, b backend.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := b.List(t.Context(), prefix, func(key string, size int64) error {
		if _, dup := got[key]; dup {
			t.Errorf("List(%q) returned %s twice", prefix, key)
		}
		got[key] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func testRoundTrip(t *testing.T, b backend.Backend) {
	for i, n := range []int{0, 1, 5 << 20} {
		key := fmt.Sprintf("objects/size-%d", n)
		data := randBytes(uint64(i+1), n)
		mustPut(t, b, key, data)
		mustGet(t, b, key, data)
		got, err := b.Size(t.Context(), key)
		if err != nil || got != int64(n) {
			t.Fatalf("Size(%s) = %d, %v; want %d", key, got, err, n)
		}
	}
}

// testGetRange: any range inside the object reads back exactly; a range
// running past the end is io.ErrUnexpectedEOF, a missing object
// ErrNotExist, a negative offset or empty length ErrBadRange.
func testGetRange(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	const size = 3<<20 + 17
	data := randBytes(9, size)
	mustPut(t, b, "packs/ab/ab01", data)
	for _, r := range [][2]int64{{0, 1}, {0, size}, {size - 1, 1}, {12345, 1 << 20}, {1 << 20, 2<<20 + 17}, {77, 4096}} {
		got, err := b.GetRange(ctx, "packs/ab/ab01", r[0], r[1])
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r[0], r[1], err)
		}
		if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("GetRange(%d, %d): %d bytes that differ from the object's", r[0], r[1], len(got))
		}
	}
	for _, r := range [][2]int64{{size - 10, 11}, {size, 1}, {size + 100, 5}, {0, size + 1}} {
		if got, err := b.GetRange(ctx, "packs/ab/ab01", r[0], r[1]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GetRange(%d, %d) past the end of %d bytes: %d bytes, %v; want io.ErrUnexpectedEOF", r[0], r[1], size, len(got), err)
		}
	}
	mustPut(t, b, "packs/ab/empty", nil)
	if got, err := b.GetRange(ctx, "packs/ab/empty", 0, 1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("GetRange(0, 1) of an empty object: %d bytes, %v; want io.ErrUnexpectedEOF", len(got), err)
	}
	for _, r := range [][2]int64{{-1, 5}, {0, 0}, {5, -1}} {
		if _, err := b.GetRange(ctx, "packs/ab/ab01", r[0], r[1]); !errors.Is(err, backend.ErrBadRange) {
			t.Errorf("GetRange(%d, %d): %v, want ErrBadRange", r[0], r[1], err)
		}
	}
	if _, err := b.GetRange(ctx, "packs/ab/ab02", 0, 1); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("GetRange of a missing object: %v, want ErrNotExist", err)
	}
	if _, err := b.GetRange(ctx, "packs", 0, 1); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("GetRange of a \"directory\": %v, want ErrNotExist", err)
	}
	if _, err := b.GetRange(ctx, "Bad/Key", 0, 1); !errors.Is(err, backend.ErrBadKey) {
		t.Errorf("GetRange of a bad key: %v, want ErrBadKey", err)
	}
}

func testOverwrite(t *testing.T, b backend.Backend) {
	mustPut(t, b, "locks/a", randBytes(1, 1000))
	second := randBytes(2, 10)
	mustPut(t, b, "locks/a", second)
	mustGet(t, b, "locks/a", second)
	if got := listAll(t, b, "locks/"); len(got) != 1 || got["locks/a"] != 10 {
		t.Fatalf("List after overwrite: %v, want locks/a of 10 bytes", got)
	}
}

func testMissing(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	for _, key := range []string{"config", "chunks/ab/ab00", "nothing/here"} {
		if _, err := b.Get(ctx, key); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("Get(%s) of a missing key: %v, want ErrNotExist", key, err)
		}
		if _, err := b.Size(ctx, key); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("Size(%s) of a missing key: %v, want ErrNotExist", key, err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%s) of a missing key: %v, want nil", key, err)
		}
	}
	// A "directory" that holds objects is not an object itself.
	mustPut(t, b, "dir/obj", []byte("x"))
	if _, err := b.Get(ctx, "dir"); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Get(dir) where dir/obj exists: %v, want ErrNotExist", err)
	}
	if _, err := b.Size(ctx, "dir"); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Size(dir) where dir/obj exists: %v, want ErrNotExist", err)
	}
}

func testList(t *testing.T, b backend.Backend) {
	objs := map[string]int64{
		"config":         7,
		"chunks/ab/ab01": 11,
		"chunks/ab/ab02": 12,
		"chunks/cd/cd01": 13,
		"snapshots/s1":   3,
		"snapshots/s2":   4,
		"locks/l1":       5,
	}
	for key, n := range objs {
		mustPut(t, b, key, randBytes(uint64(n), int(n)))
	}
	sub := func(pred func(string) bool) map[string]int64 {
		m := map[string]int64{}
		for k, v := range objs {
			if pred(k) {
				m[k] = v
			}
		}
		return m
	}
	prefixOf := func(p string) func(string) bool {
		return func(k string) bool { return len(k) >= len(p) && k[:len(p)] == p }
	}
	for _, prefix := range []string{"", "chunks/", "chunks/ab/", "chunks/ab/ab0", "chunks/c", "snapshots/", "snap",
		"config", "locks/", "nothing/", "chunks/zz/"} {
		got, want := listAll(t, b, prefix), sub(prefixOf(prefix))
		if !mapsEqual(got, want) {
			t.Errorf("List(%q) = %v, want %v", prefix, got, want)
		}
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testListStops(t *testing.T, b backend.Backend) {
	for i := range 5 {
		mustPut(t, b, fmt.Sprintf("snapshots/s%d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	calls := 0
	err := b.List(t.Context(), "snapshots/", func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with fn failing: err %v after %d calls, want the fn's error after 1", err, calls)
	}
}

func testDelete(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	mustPut(t, b, "chunks/ab/ab01", []byte("a"))
	mustPut(t, b, "chunks/ab/ab02", []byte("b"))
	for range 2 { // idempotent
		if err := b.Delete(ctx, "chunks/ab/ab01"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := b.Get(ctx, "chunks/ab/ab01"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get after Delete: %v, want ErrNotExist", err)
	}
	if got := listAll(t, b, "chunks/"); len(got) != 1 || got["chunks/ab/ab02"] != 1 {
		t.Fatalf("List after Delete: %v, want only chunks/ab/ab02", got)
	}
	mustGet(t, b, "chunks/ab/ab02", []byte("b"))
}

func testBadKeys(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	for _, key := range []string{"", "/abs", "trailing/", "a//b", ".", "..", "a/../b", "a/./b", "Upper", "sp ace", "a\\b", "é"} {
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
	if got := listAll(t, b, ""); len(got) != 0 {
		t.Fatalf("bad keys left objects: %v", got)
	}
}

// testConcurrent: distinct keys written and read from many goroutines, and
// one key overwritten concurrently, which must read back as one whole
// version, never a mix.
func testConcurrent(t *testing.T, b backend.Backend) {
	ctx := t.Context()
	const workers, each = 8, 6
	va, vb := randBytes(100, 64<<10), randBytes(101, 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("chunks/%02x/w%d-%d", w, w, i)
				data := randBytes(uint64(w*100+i), 1000+w*i)
				if err := b.Put(ctx, key, data); err != nil {
					errs <- err
					continue
				}
				got, err := b.Get(ctx, key)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get %s after put: %v (equal %v)", key, err, bytes.Equal(got, data))
				}
				v := va
				if (w+i)%2 == 1 {
					v = vb
				}
				if err := b.Put(ctx, "shared", v); err != nil {
					errs <- err
				}
				if got, err := b.Get(ctx, "shared"); err != nil || !bytes.Equal(got, va) && !bytes.Equal(got, vb) {
					errs <- fmt.Errorf("shared object torn or unreadable: %v", err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := listAll(t, b, "chunks/")
	if len(got) != workers*each {
		t.Fatalf("List after concurrent puts: %d keys, want %d", len(got), workers*each)
	}
}

// testCancelledPut: a Put whose ctx is cancelled before it starts fails
// and leaves nothing; one cancelled while it runs either fails and leaves
// nothing or succeeds with the whole object.
func testCancelledPut(t *testing.T, b backend.Backend) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Put(ctx, "snapshots/cancelled", []byte("data")); err == nil {
		t.Fatal("Put with a cancelled ctx succeeded")
	}
	if _, err := b.Get(t.Context(), "snapshots/cancelled"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get after a cancelled Put: %v, want ErrNotExist", err)
	}
	data := randBytes(7, 4<<20)
	for i, delay := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond} {
		key := fmt.Sprintf("snapshots/mid-%d", i)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(delay); cancel() }()
		err := b.Put(ctx, key, data)
		cancel()
		got, gerr := b.Get(t.Context(), key)
		switch {
		case err != nil && !errors.Is(gerr, backend.ErrNotExist):
			t.Errorf("Put cancelled after %v failed (%v) but Get finds: %d bytes, %v", delay, err, len(got), gerr)
		case err == nil && (gerr != nil || !bytes.Equal(got, data)):
			t.Errorf("Put cancelled after %v succeeded but Get: %d bytes, %v", delay, len(got), gerr)
		}
	}
	for k := range listAll(t, b, "") {
		if _, err := b.Get(t.Context(), k); err != nil {
			t.Errorf("List shows %s but Get fails: %v", k, err)
		}
	}
}

func testLocation(t *testing.T, b backend.Backend) {
	if b.Location() == "" {
		t.Fatal("Location is empty")
	}
}
