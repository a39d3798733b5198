package repo

import "sync"

// serialProgress wraps a progress callback for use from several workers:
// calls are serialised and done never goes backwards. nil stays a no-op.
func serialProgress(fn func(done, total int64), total int64) func(done int64) {
	if fn == nil {
		return func(int64) {}
	}
	var mu sync.Mutex // serialises fn; guards last
	var last int64
	return func(done int64) {
		mu.Lock()
		defer mu.Unlock()
		if done > last {
			last = done
			fn(done, total)
		}
	}
}
