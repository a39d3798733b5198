package nbd

import (
	"bufio"
	"errors"
	"net"
	"time"
)

// writer sends replies in completion order and flushes the socket buffer
// whenever no other reply is waiting, so pipelined replies share syscalls.
// A reply that makes no progress for WriteTimeout (the client stopped
// reading) drops the connection; after a failed write it only drains, so
// workers never block and every buffer and ticket goes back.
func (t *transmission) writer() {
	for r := range t.replies {
		t.wmu.Lock()
		t.writeLocked(r, len(t.replies) == 0)
		t.wmu.Unlock()
		r.free()
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.werr == nil {
		if err := t.c.bw.Flush(); err != nil {
			t.werr = err
			t.writeFailed(err)
		}
	}
}

// send hands r to the writer. A worker whose request is the only one in
// flight, finding the writer idle, writes and flushes r itself: a client
// at queue depth 1 then gets its reply without a goroutine hand-off (one
// wake-up less per request), while pipelined replies still go through the
// writer and share syscalls.
func (t *transmission) send(r *reply) {
	if t.active.Load() == 1 && len(t.replies) == 0 && t.wmu.TryLock() {
		t.writeLocked(r, true)
		t.wmu.Unlock()
		r.free()
		return
	}
	t.replies <- r
}

// writeLocked writes r (then flushes the buffer, if flush) unless an
// earlier write failed; wmu is held.
func (t *transmission) writeLocked(r *reply, flush bool) {
	if t.werr != nil {
		return
	}
	err := writeReply(t.c.bw, r)
	if err == nil && flush {
		err = t.c.bw.Flush()
	}
	if err != nil {
		t.werr = err
		t.writeFailed(err)
	}
}

// writeReply hands one reply to w; data larger than writeChunk goes in
// pieces, so that the write deadline is renewed while a slow client still
// takes it.
func writeReply(w *bufio.Writer, r *reply) error {
	if _, err := w.Write(r.hdr[:r.hlen]); err != nil {
		return err
	}
	for d := r.data; len(d) > 0; {
		k := min(len(d), writeChunk)
		if _, err := w.Write(d[:k]); err != nil {
			return err
		}
		d = d[k:]
	}
	return nil
}

func (t *transmission) writeFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.c.log.Warn("nbd client stopped reading replies: dropping the connection",
			"write_timeout", t.c.srv.opts.WriteTimeout)
	case errors.Is(err, net.ErrClosed):
		// We closed it (disconnect, Shutdown cut short).
	default:
		t.c.log.Info("nbd reply write failed", "err", err)
	}
	t.c.drop()
}

// deadlineWriter writes to nc with a write deadline of timeout from (about)
// the start of each write; it renews the deadline at most once per
// renewEvery, so small replies do not each pay for it.
type deadlineWriter struct {
	nc         net.Conn
	timeout    time.Duration
	renewEvery time.Duration
	renewed    time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.renewed) >= d.renewEvery {
		if err := d.nc.SetWriteDeadline(now.Add(d.timeout)); err != nil {
			return 0, err
		}
		d.renewed = now
	}
	return d.nc.Write(p)
}
