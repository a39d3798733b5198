package flat

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"golang.org/x/sys/unix"
)

// "fsyncgate": after a failed fdatasync the kernel may have dropped the
// dirty pages, and a retried fdatasync succeeds. The failure must stick:
// every later Flush and write fails with ErrSyncFailed (carrying the
// first errno) until the volume is reopened; reads keep working.
func TestFailedSyncIsSticky(t *testing.T) {
	desc := newVolume(t, 1<<20, CreateOptions{})
	d := openVolume(t, desc, Options{Failpoints: failpoint.Parse(FailpointDataSync + "=eio")})
	c := countSyscalls(d)
	ctx := t.Context()
	data := bytes.Repeat([]byte{0x5a}, 8192)
	if err := d.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	err := d.Flush(ctx)
	if !errors.Is(err, failpoint.ErrInjected) || !errors.Is(err, unix.EIO) {
		t.Fatalf("Flush with %s armed = %v, want the injected EIO", FailpointDataSync, err)
	}
	c.want(t, "failed flush", 1, 0, 0) // the failpoint stood in for fdatasync

	d.fp = nil // the disk "recovers": a real fdatasync would now succeed
	ops := map[string]func() error{
		"Flush":       func() error { return d.Flush(ctx) },
		"WriteAtFUA":  func() error { return d.WriteAt(ctx, data, 0, blockdev.FUA) },
		"WriteAt":     func() error { return d.WriteAt(ctx, data, 0, 0) },
		"WriteZeroes": func() error { return d.WriteZeroes(ctx, 0, 4096, blockdev.FUA) },
		"Trim":        func() error { return d.Trim(ctx, 0, 8192, 0) },
	}
	for name, op := range ops {
		err := op()
		if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, unix.EIO) {
			t.Errorf("%s after a failed sync = %v, want ErrSyncFailed wrapping EIO", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), d.Path()) {
			t.Errorf("%s error %q does not name %s", name, err, d.Path())
		}
	}
	c.want(t, "after the failure", 1, 0, 0) // nothing reached the file
	readBack(t, d, 0, data)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openVolume(t, desc, Options{})
	defer d.Close()
	if err := d.WriteAt(ctx, data, 0, blockdev.FUA); err != nil {
		t.Fatalf("FUA write after reopening: %v", err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush after reopening: %v", err)
	}
}

// A FUA write whose fdatasync fails breaks the Device too; one whose
// data write fails with ENOSPC does not (TestFUANoSpaceIsNotSticky).
func TestFailedFUASyncIsSticky(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	d.sys.fdatasync = func(int) error { return unix.EIO }
	ctx := t.Context()
	if err := d.WriteAt(ctx, []byte("x"), 0, blockdev.FUA); !errors.Is(err, unix.EIO) || errors.Is(err, ErrSyncFailed) {
		t.Fatalf("FUA write = %v, want the EIO itself", err)
	}
	if err := d.Flush(ctx); !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("Flush after a failed FUA write = %v, want ErrSyncFailed", err)
	}
}

// Only one of the syncs in flight when write-back fails gets the error
// from the kernel; the others must not report success. One fdatasync
// fails while another, started during it, returns 0 from the kernel:
// both must fail.
func TestConcurrentSyncSeesFailure(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	var calls atomic.Int64
	inFirst, secondDone := make(chan struct{}), make(chan struct{})
	d.sys.fdatasync = func(int) error {
		if calls.Add(1) == 1 {
			close(inFirst)
			<-secondDone // the second sync ran to completion inside this one
			return unix.EIO
		}
		close(secondDone)
		return nil // the kernel gave the error to the other caller
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = d.Flush(ctx) })
	<-inFirst
	wg.Go(func() { errs[1] = d.Flush(ctx) })
	wg.Wait()
	if !errors.Is(errs[0], unix.EIO) {
		t.Errorf("first Flush = %v, want EIO", errs[0])
	}
	if !errors.Is(errs[1], ErrSyncFailed) {
		t.Errorf("overlapping Flush = %v, want ErrSyncFailed", errs[1])
	}
}
