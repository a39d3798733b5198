// Package netproxy is a TCP proxy for tests and benchmarks that stands in
// for a network: it adds one-way latency and injects link faults between a
// client and a target. netem is not available on the machines we test on,
// so a slow or broken link to a mirror target is simulated here.
//
// Latency is applied per chunk of bytes: each chunk read from one side is
// stamped with the time it was read and written to the other side at
// stamp+Delay. Chunks are pipelined through a bounded queue per direction,
// so the delay adds latency without capping throughput (up to the queue's
// bytes per Delay). A round trip through the proxy takes at least 2*Delay.
//
// Faults:
//
//	Cut / Restore     close every open connection (the peers see EOF or a
//	                  reset) and refuse new ones: they are accepted, then
//	                  closed at once, until Restore.
//	Pause / Resume    a black hole: connections stay open but no byte
//	                  passes in either direction, and new connections are
//	                  accepted but not connected to the target, until
//	                  Resume delivers everything held. This is a "link
//	                  down" without any RST or FIN.
//	Hold / Release    the bytes every connection open now sends to the
//	                  target are held; new connections pass. A held
//	                  connection's target side outlives its client: when
//	                  the client closes or resets, what it sent stays
//	                  held. Release delivers it all, in order, then ends
//	                  the target side: the late packets of an abandoned
//	                  connection that a cut link kept in flight.
//	SetDelay          change the latency for bytes read from now on.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Proxy.
type Options struct {
	// Delay is the latency added in each direction (one way).
	Delay time.Duration
	// Logger gets connection events at Debug and dial failures at Warn;
	// nil discards them.
	Logger *slog.Logger
}

// dialTimeout bounds one dial of the target.
const dialTimeout = 10 * time.Second

// Proxy forwards every connection accepted on its listener to one target.
type Proxy struct {
	ln     net.Listener
	target string
	log    *slog.Logger
	delay  atomic.Int64   // time.Duration added to each chunk, read at read time
	wg     sync.WaitGroup // one per connection handler and per pipe goroutine

	mu      sync.Mutex         // guards cut, running, conns, closed
	cut     bool               // new connections are closed at once
	running chan struct{}      // closed unless paused; Pause installs an open one
	conns   map[*pair]struct{} // every accepted connection not yet closed
	closed  bool               // Close has been called
}

// New returns a proxy that forwards connections accepted on listen to
// target: "HOST:PORT" (TCP) or "unix:PATH" (a unix socket). Call Serve to
// start it and Close to stop it.
func New(listen net.Listener, target string, opts Options) *Proxy {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	running := make(chan struct{})
	close(running)
	p := &Proxy{
		ln:      listen,
		target:  target,
		log:     log,
		running: running,
		conns:   map[*pair]struct{}{},
	}
	p.delay.Store(int64(max(opts.Delay, 0)))
	return p
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Serve accepts connections until Close (then it returns nil) or until
// the listener fails.
func (p *Proxy) Serve() error {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", p.ln.Addr(), err)
		}
		p.mu.Lock()
		if p.closed || p.cut {
			p.mu.Unlock()
			p.log.Debug("netproxy: refused connection (cut)", "client", c.RemoteAddr())
			c.Close()
			continue
		}
		pr := newPair(p, c)
		p.conns[pr] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(pr)
	}
}

// handle connects an accepted client to the target, once the link is not
// paused, and starts the two directions.
func (p *Proxy) handle(pr *pair) {
	defer p.wg.Done()
	if !p.waitRunning(pr.done) {
		return
	}
	network, addr := "tcp", p.target
	if path, ok := strings.CutPrefix(p.target, "unix:"); ok {
		network, addr = "unix", path
	}
	d := net.Dialer{Timeout: dialTimeout}
	t, err := d.DialContext(pr.ctx, network, addr)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.log.Warn("netproxy: dial target failed", "target", p.target, "err", err)
		}
		pr.close()
		return
	}
	if !pr.setTarget(t) {
		return // cut or closed while dialling; setTarget closed t
	}
	p.log.Debug("netproxy: connection open", "client", pr.client.RemoteAddr(), "target", p.target)
	p.wg.Add(2)
	go pr.pipe(pr.client, t)
	go pr.pipe(t, pr.client)
}

// remove forgets a closed pair.
func (p *Proxy) remove(pr *pair) {
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// take returns every open pair; cut marks the proxy cut and closing marks
// it closed, in the same critical section so no new pair slips in.
func (p *Proxy) take(cut, closing bool) []*pair {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = p.cut || cut
	p.closed = p.closed || closing
	prs := make([]*pair, 0, len(p.conns))
	for pr := range p.conns {
		prs = append(prs, pr)
	}
	return prs
}

// Cut closes every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	for _, pr := range p.take(true, false) {
		pr.close()
	}
	p.log.Debug("netproxy: cut", "target", p.target)
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Pause holds every byte in both directions (and new connections) until
// Resume. Bytes already being written when Pause is called may still pass.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.running:
		p.running = make(chan struct{})
	default: // already paused
	}
}

// Resume lets the bytes held since Pause pass, in order.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.running: // not paused
	default:
		close(p.running)
	}
}

// Held is the set of connections one Hold took.
type Held struct {
	ch    chan struct{}
	pairs []*pair
	once  sync.Once
}

// Hold holds, from now on, the bytes each connection open now (and
// connected to the target) sends to the target; see the package doc.
func (p *Proxy) Hold() *Held {
	h := &Held{ch: make(chan struct{})}
	for _, pr := range p.take(false, false) {
		if pr.setHold(h.ch) {
			h.pairs = append(h.pairs, pr)
		}
	}
	p.log.Debug("netproxy: hold", "target", p.target, "conns", len(h.pairs))
	return h
}

// Conns is the number of connections held.
func (h *Held) Conns() int { return len(h.pairs) }

// Release delivers what the held connections sent. Call it once their
// clients are gone: it returns when each one's bytes were written to the
// target (or the target refused them) and it was closed, or the proxy was
// closed.
func (h *Held) Release() {
	h.once.Do(func() { close(h.ch) })
	for _, pr := range h.pairs {
		select {
		case <-pr.upDone:
		case <-pr.done:
		}
	}
}

// SetDelay changes the one-way latency for bytes read from now on.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(max(d, 0))) }

// Conns is the number of accepted connections not yet closed.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// waitRunning blocks while the proxy is paused; it reports false if done
// is closed first.
func (p *Proxy) waitRunning(done <-chan struct{}) bool {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	select {
	case <-running:
		return true
	case <-done:
		return false
	}
}

// Close stops accepting, closes every connection and waits for all of the
// proxy's goroutines. Serve then returns nil. Close may be called again.
func (p *Proxy) Close() error {
	prs := p.take(false, true)
	err := p.ln.Close()
	for _, pr := range prs {
		pr.close()
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close proxy listener %s: %w", p.ln.Addr(), err)
	}
	return nil
}
