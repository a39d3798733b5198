package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// copyDevice copies src into dst (same size; dst reads as zeros where it
// was not written). Ranges src reports as holes or zeros, and all-zero
// chunks, are not written. rate, when > 0, caps the bytes read per second
// (the --rate of a migration); progress gets the bytes done so far.
func copyDevice(ctx context.Context, dst, src blockdev.Device, rate int64, progress func(done int64)) error {
	size := src.Size()
	if dst.Size() != size {
		return fmt.Errorf("copy: source is %d bytes, target %d", size, dst.Size())
	}
	chunk := chunkSize(dst.Caps())
	pool := sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}
	var done atomic.Int64
	lim := newLimiter(rate)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	for off := int64(0); off < size && gctx.Err() == nil; {
		ext, err := src.BlockStatus(gctx, blockdev.MetaBaseAllocation, off, min(size-off, 1<<30))
		if err != nil {
			return fmt.Errorf("copy: block status at %d: %w", off, err)
		}
		if len(ext) == 0 {
			return fmt.Errorf("copy: block status at %d returned nothing", off)
		}
		for _, x := range ext {
			if x.Flags&blockdev.StateZero == 0 {
				for p := off; p < off+x.Length; p += chunk {
					p, n := p, min(chunk, off+x.Length-p)
					g.Go(func() error {
						bp := pool.Get().(*[]byte)
						defer pool.Put(bp)
						b := (*bp)[:n]
						if err := lim.wait(gctx, n); err != nil {
							return err
						}
						if err := src.ReadAt(gctx, b, p); err != nil {
							return fmt.Errorf("copy: read at %d: %w", p, err)
						}
						if !blockdev.IsZero(b) {
							if err := dst.WriteAt(gctx, b, p, 0); err != nil {
								return fmt.Errorf("copy: write at %d: %w", p, err)
							}
						}
						if progress != nil {
							progress(done.Add(n))
						}
						return nil
					})
				}
			} else if progress != nil {
				progress(done.Add(x.Length))
			}
			off += x.Length
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return dst.Flush(ctx)
}

// limiter spaces reads to at most rate bytes per second.
type limiter struct {
	rate int64
	mu   sync.Mutex // guards next
	next time.Time  // when the budget allows the next read to start
}

func newLimiter(rate int64) *limiter { return &limiter{rate: rate} }

func (l *limiter) wait(ctx context.Context, n int64) error {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	l.mu.Unlock()
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
