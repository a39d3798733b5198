package transfer

import (
	"context"
	"sync"
	"time"
)

// Limiter spaces reads to at most rate bytes per second (a migration's
// --rate). Its methods are safe for concurrent use.
type Limiter struct {
	rate int64
	mu   sync.Mutex // guards next
	next time.Time  // when the budget allows the next read to start
}

// NewLimiter returns a Limiter of rate bytes per second; rate <= 0 does
// not limit.
func NewLimiter(rate int64) *Limiter { return &Limiter{rate: rate} }

// Wait waits until n more bytes fit the rate, or ctx ends.
func (l *Limiter) Wait(ctx context.Context, n int64) error {
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
