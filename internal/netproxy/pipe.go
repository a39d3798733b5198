package netproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// chunkSize is the largest read; one chunk is the unit of delay.
	chunkSize = 64 << 10
	// queueChunks bounds the chunks in flight per direction: with Delay d
	// one direction carries at most queueChunks*chunkSize bytes per d
	// (16 MiB per 5 ms). A full queue stops the reader: back-pressure.
	queueChunks = 256
)

// chunk is bytes read at one time, or the end of a direction (eof).
type chunk struct {
	buf []byte
	at  time.Time // when it may be written
	eof bool      // the source sent FIN: half-close the destination
}

// pair is one client connection and its connection to the target.
type pair struct {
	p      *Proxy
	client net.Conn
	ctx    context.Context // cancelled by close: stops the dial
	cancel context.CancelFunc
	done   chan struct{} // closed by close
	ended  atomic.Int32  // directions that ended with a clean EOF
	once   sync.Once     // runs close's body once

	mu     sync.Mutex // guards target, closed, hold, held
	target net.Conn   // nil until dialled
	closed bool
	// hold, while open, holds the bytes from the client (Proxy.Hold);
	// held says the pair was held once: then the end of the client does
	// not end the target side until what it sent was delivered.
	hold chan struct{}
	held bool
	// upDone is closed when the client-to-target direction has ended.
	upDone chan struct{}
}

func newPair(p *Proxy, client net.Conn) *pair {
	ctx, cancel := context.WithCancel(context.Background())
	return &pair{p: p, client: client, ctx: ctx, cancel: cancel, done: make(chan struct{}), upDone: make(chan struct{})}
}

// setTarget installs the dialled target connection; if the pair was
// closed meanwhile it closes t and reports false.
func (pr *pair) setTarget(t net.Conn) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.closed {
		t.Close()
		return false
	}
	pr.target = t
	return true
}

// close closes both connections and stops both directions.
func (pr *pair) close() {
	pr.once.Do(func() {
		pr.mu.Lock()
		pr.closed = true
		t := pr.target
		pr.mu.Unlock()
		pr.cancel()
		pr.client.Close()
		if t != nil {
			t.Close()
		}
		pr.p.remove(pr) // before done: who waits on done sees Conns without it
		close(pr.done)
		pr.p.log.Debug("netproxy: connection closed", "client", pr.client.RemoteAddr())
	})
}

// pipe carries one direction, src to dst: a reader stamps chunks and
// queues them; the writer (this goroutine) writes each at its time. It
// consumes one wg count; the reader it starts takes another.
func (pr *pair) pipe(src, dst net.Conn) {
	defer pr.p.wg.Done()
	up := src == pr.client
	if up {
		defer close(pr.upDone)
	}
	q := make(chan chunk, queueChunks)
	free := make(chan []byte, queueChunks+2) // the reader holds one, the writer one
	pr.p.wg.Add(1)
	go pr.read(src, q, free, up)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var c chunk
		select {
		case c = <-q:
		case <-pr.done:
			return
		}
		if wait := time.Until(c.at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-pr.done:
				return
			}
		}
		if !pr.p.waitRunning(pr.done) {
			return
		}
		held := false
		if up {
			var ok bool
			if held, ok = pr.waitHold(); !ok {
				return
			}
		}
		if c.eof {
			if held {
				// The client is gone and what it sent was delivered
				// late: now the target sees the end too.
				pr.close()
				return
			}
			pr.halfClose(dst)
			return
		}
		_, err := dst.Write(c.buf)
		free <- c.buf[:cap(c.buf)]
		if err != nil {
			if !up && pr.isHeld() {
				return // the client of a held pair is gone; its bytes still go up
			}
			pr.close()
			return
		}
	}
}

// waitHold waits while the pair's client bytes are held; it reports
// whether the pair was ever held, and false in ok if the pair closed.
func (pr *pair) waitHold() (held, ok bool) {
	pr.mu.Lock()
	h, held := pr.hold, pr.held
	pr.mu.Unlock()
	if h == nil {
		return held, true
	}
	select {
	case <-h:
		return held, true
	case <-pr.done:
		return held, false
	}
}

func (pr *pair) isHeld() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.held
}

// setHold holds the pair's client bytes until ch is closed; false if the
// pair is closed already or its client direction ended.
func (pr *pair) setHold(ch chan struct{}) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.closed || pr.target == nil {
		return false
	}
	select {
	case <-pr.upDone:
		return false
	default:
	}
	pr.hold, pr.held = ch, true
	return true
}

// read reads src into chunks until EOF (queued, so the FIN is delayed
// like the bytes) or an error (which closes the pair at once: a reset
// or our own close).
func (pr *pair) read(src net.Conn, q chan<- chunk, free chan []byte, up bool) {
	defer pr.p.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, chunkSize)
		}
		n, err := src.Read(buf)
		at := time.Now().Add(time.Duration(pr.p.delay.Load()))
		if n > 0 {
			select {
			case q <- chunk{buf: buf[:n], at: at}:
			case <-pr.done:
				return
			}
		}
		if errors.Is(err, io.EOF) || err != nil && up && pr.isHeld() {
			// A held client that resets: what it sent is still
			// delivered, then the end (a cut link's late packets).
			select {
			case q <- chunk{at: at, eof: true}:
			case <-pr.done:
			}
			return
		}
		if err != nil {
			pr.close()
			return
		}
	}
}

// halfClose passes a FIN on to dst; when both directions have ended the
// pair is closed.
func (pr *pair) halfClose(dst net.Conn) {
	cw, ok := dst.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil || pr.ended.Add(1) == 2 {
		pr.close()
	}
}
