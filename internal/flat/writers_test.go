package flat

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Plain writes enter pwrite maxKernelWriters at a time; a write waiting
// for its turn is cancelled by its context.
func TestKernelWritersBounded(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	var in, peak atomic.Int64
	entered, release := make(chan struct{}, 64), make(chan struct{})
	orig := d.sys.pwrite
	d.sys.pwrite = func(fd int, p []byte, off int64) (int, error) {
		n := in.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		in.Add(-1)
		return orig(fd, p, off)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	const writers = 8
	for i := range writers {
		wg.Go(func() {
			if err := d.WriteAt(ctx, []byte{byte(i)}, int64(i)*4096, 0); err != nil {
				t.Error(err)
			}
		})
	}
	<-entered // one is inside pwrite, the others wait their turn

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.WriteAt(cctx, []byte{1}, 0, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting write with a cancelled context = %v, want context.Canceled", err)
	}
	for range writers {
		release <- struct{}{}
		if len(entered) > 0 {
			<-entered
		}
	}
	wg.Wait()
	if got := peak.Load(); got != maxKernelWriters {
		t.Errorf("%d writes inside pwrite at once, want at most %d", got, maxKernelWriters)
	}
}
