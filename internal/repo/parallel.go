package repo

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// forEach calls fn(ctx, i) for i in [0, n) from up to workers goroutines,
// each taking the next i in order. The first error cancels the rest and
// is returned.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(max(workers, 1), max(n, 1)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := fn(gctx, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
