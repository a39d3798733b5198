package nbd

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ErrPoolFailed: a connection of a Pool was lost, so the Pool is unusable.
// Every later call fails with an error wrapping it and the cause; the
// caller closes the Pool and dials a new one.
var ErrPoolFailed = errors.New("nbd connection pool failed")

// errPoolClosed: the Pool was closed by Close.
var errPoolClosed = fmt.Errorf("nbd pool: %w", blockdev.ErrClosed)

// Pool is several connections to one export used as one Device, for a
// client (the mirror) that needs more than one connection's throughput.
// It opens several connections only when the server advertises
// NBD_FLAG_CAN_MULTI_CONN: the spec says a client SHOULD NOT multiplex
// over more than one connection without it, because the server's caches
// may then differ per connection. Each call goes whole to one connection:
// the one with the fewest requests in flight, ties broken round-robin.
//
// A Pool fails as a unit: once any connection is lost (server gone, a
// broken stream, or a caller's cancelled ctx, which tears the connection
// down because an NBD request cannot be cancelled), every later call
// returns the same error, wrapping ErrPoolFailed. Calls already in flight
// on healthy connections may still complete. Close is still required.
type Pool struct {
	conns  []*poolConn
	size   int64
	caps   blockdev.Caps
	next   atomic.Uint64 // round-robin start for pick
	target string        // "address export" for error messages

	mu  sync.Mutex // guards err
	err error      // first failure, or errPoolClosed after Close

	done     chan struct{}  // closed when err is first set
	watchers sync.WaitGroup // one per connection, until its reader ends
}

// poolConn is one connection of a Pool.
type poolConn struct {
	c    *Client
	load atomic.Int64 // requests in flight on c
}

var _ blockdev.Device = (*Pool)(nil)

// DialPool connects to t with n connections (at least 1) if the server
// advertises multi-conn, and with one connection otherwise; Conns tells
// which. opts apply to every connection. Give ctx a deadline: a server
// that caps its clients (qemu-nbd --shared) leaves extra connections
// waiting in its listen queue.
func DialPool(ctx context.Context, t Target, opts ClientOptions, n int) (*Pool, error) {
	p := &Pool{target: fmt.Sprintf("%s export %q", t.Address, t.Export), done: make(chan struct{})}
	first, err := Dial(ctx, t, opts)
	if err != nil {
		return nil, err
	}
	clients := []*Client{first}
	if first.caps.MultiConn && n > 1 {
		more := make([]*Client, n-1)
		g, gctx := errgroup.WithContext(ctx)
		for i := range more {
			g.Go(func() error {
				c, err := Dial(gctx, t, opts)
				if err != nil {
					return fmt.Errorf("nbd pool connection %d of %d: %w", i+2, n, err)
				}
				more[i] = c
				return nil
			})
		}
		err := g.Wait()
		for _, c := range more {
			if c != nil {
				clients = append(clients, c)
			}
		}
		if err == nil {
			err = sameExport(first, clients[1:])
		}
		if err != nil {
			for _, c := range clients {
				c.Close()
			}
			return nil, err
		}
	}
	p.size, p.caps = first.size, first.caps
	for _, c := range clients {
		p.conns = append(p.conns, &poolConn{c: c})
	}
	for i, c := range clients {
		p.watchers.Add(1)
		go func() {
			defer p.watchers.Done()
			<-c.done
			p.fail(i, c.alive())
		}()
	}
	return p, nil
}

// sameExport checks that every connection sees the export the first one
// does; anything else means the address does not lead to one export.
func sameExport(first *Client, others []*Client) error {
	for _, c := range others {
		if c.size != first.size || !reflect.DeepEqual(sortedCaps(c.caps), sortedCaps(first.caps)) {
			return fmt.Errorf("nbd pool: connections disagree on the export (size %d caps %+v, then size %d caps %+v)",
				first.size, first.caps, c.size, c.caps)
		}
	}
	return nil
}

// sortedCaps is c with its meta contexts in a stable order (the client
// lists them in map order).
func sortedCaps(c blockdev.Caps) blockdev.Caps {
	c.MetaContexts = slices.Sorted(slices.Values(c.MetaContexts))
	return c
}

// Conns is the number of connections the pool opened.
func (p *Pool) Conns() int { return len(p.conns) }

// Done is closed when the pool fails or is closed; Err then says why.
func (p *Pool) Done() <-chan struct{} { return p.done }

// Err is nil while the pool works; then the failure (wrapping
// ErrPoolFailed) or, after Close, an error wrapping blockdev.ErrClosed.
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// fail records that connection i was lost with cause, unless the pool has
// already failed or was closed, and returns the pool's error.
func (p *Pool) fail(i int, cause error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		if cause == nil {
			cause = errors.New("connection ended")
		}
		p.err = fmt.Errorf("nbd pool to %s: connection %d of %d: %w: %w", p.target, i+1, len(p.conns), ErrPoolFailed, cause)
		close(p.done)
	}
	return p.err
}

// pick returns the connection with the fewest requests in flight.
func (p *Pool) pick() (int, *poolConn) {
	n := len(p.conns)
	best := int(p.next.Add(1) % uint64(n))
	for k := 1; k < n; k++ {
		i := (best + k) % n
		if p.conns[i].load.Load() < p.conns[best].load.Load() {
			best = i
		}
	}
	return best, p.conns[best]
}

// run sends one call on one connection. An error after which the
// connection is no longer alive fails the whole pool; any other error
// (a request the server refused) is the call's alone.
func (p *Pool) run(fn func(c *Client) error) error {
	if err := p.Err(); err != nil {
		return err
	}
	i, pc := p.pick()
	pc.load.Add(1)
	err := fn(pc.c)
	pc.load.Add(-1)
	if err != nil {
		if cerr := pc.c.alive(); cerr != nil {
			return p.fail(i, cerr)
		}
	}
	return err
}

// Size is the export size.
func (p *Pool) Size() int64 { return p.size }

// Caps are the export's capabilities as the server advertised them.
func (p *Pool) Caps() blockdev.Caps { return p.caps }

// ReadAt reads p at off on one connection.
func (p *Pool) ReadAt(ctx context.Context, b []byte, off int64) error {
	return p.run(func(c *Client) error { return c.ReadAt(ctx, b, off) })
}

// WriteAt writes b at off on one connection; FUA is passed through (with
// multi-conn its effect is visible on every connection when it returns).
func (p *Pool) WriteAt(ctx context.Context, b []byte, off int64, flags blockdev.WriteFlags) error {
	return p.run(func(c *Client) error { return c.WriteAt(ctx, b, off, flags) })
}

// WriteZeroes zeroes the range on one connection.
func (p *Pool) WriteZeroes(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	return p.run(func(c *Client) error { return c.WriteZeroes(ctx, off, length, flags) })
}

// Trim trims the range on one connection.
func (p *Pool) Trim(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	return p.run(func(c *Client) error { return c.Trim(ctx, off, length, flags) })
}

// Flush sends one NBD_CMD_FLUSH, on one connection, and that is enough.
//
// The Device contract asks Flush to make durable every write that completed
// before the call. The pool completes a write only after the server's reply
// to it arrived (Client.do waits for it), so when Flush is called the reply
// of every such write, on whichever connection, has been received: this is
// the spec's condition on a multi-connection client ("MUST NOT issue an
// NBD_CMD_FLUSH request until it has received the reply for all write
// commands which it expects to be covered by the flush"), and it needs no
// bookkeeping here. The server replied to those writes before it processed
// the flush, so it must persist them before replying to the flush; and with
// NBD_FLAG_CAN_MULTI_CONN "the effects of NBD_CMD_FLUSH ... MUST be visible
// across all connections", so the flush covers writes completed on every
// connection, not only its own. Without multi-conn the pool has a single
// connection and the plain single-connection rule applies. Writes still in
// flight when Flush is called are not covered, as the contract allows.
func (p *Pool) Flush(ctx context.Context) error {
	return p.run(func(c *Client) error { return c.Flush(ctx) })
}

// BlockStatus asks one connection (every connection selected the same
// meta contexts at DialPool).
func (p *Pool) BlockStatus(ctx context.Context, meta string, off, length int64) ([]blockdev.Extent, error) {
	var ext []blockdev.Extent
	err := p.run(func(c *Client) error {
		var err error
		ext, err = c.BlockStatus(ctx, meta, off, length)
		return err
	})
	return ext, err
}

// Abort drops every connection at once (Client.Abort: reset, unsent
// requests discarded, no NBD_CMD_DISC). When it returns no connection of
// the pool can send anything more. Later calls fail with an error wrapping
// blockdev.ErrClosed.
func (p *Pool) Abort() error {
	return p.end(func(c *Client) error { return c.Abort() })
}

// Close disconnects every connection; requests in flight fail. Later calls
// fail with an error wrapping blockdev.ErrClosed.
func (p *Pool) Close() error {
	return p.end(func(c *Client) error { return c.Close() })
}

// end closes the pool and every connection with closeFn.
func (p *Pool) end(closeFn func(c *Client) error) error {
	p.mu.Lock()
	if p.err == errPoolClosed {
		p.mu.Unlock()
		return errPoolClosed
	}
	if p.err == nil {
		close(p.done)
	}
	p.err = errPoolClosed
	p.mu.Unlock()
	var errs []error
	for _, pc := range p.conns {
		if err := closeFn(pc.c); err != nil {
			errs = append(errs, err)
		}
	}
	p.watchers.Wait()
	return errors.Join(errs...)
}
