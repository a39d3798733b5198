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
		// Everything already queued goes into the buffer before one flush;
		// only this goroutine receives, so a non-empty queue has a reply.
		for {
			t.writeLocked(r, false)
			r.free()
			if len(t.replies) == 0 {
				break
			}
			r = <-t.replies
		}
		t.flushLocked()
		t.wmu.Unlock()
	}
}

// send hands r to the writer, except the reply of a request run in line
// (lead) that writes its own (inlSelf) while nothing else is in flight
// and the writer is idle: that goroutine writes and flushes it itself, so
// the client gets the answer without a hand-off. inlSelf is set for a
// FLUSH or FUA write (a guest's journal waits on those), and for any
// request of a client that had read all its replies (caughtUp: queue
// depth 1). A pipelining client's replies go through the writer, which
// batches them while the reader goes on reading: written by the reader,
// they made the connection serial and took queue-depth-32 p99 from 1.3 to
// 2.2 ms (bench/RESULTS.md).
func (t *transmission) send(r *reply) {
	if t.inl.Load() != 0 && t.inlSelf.Load() && t.active.Load() == 1 && len(t.replies) == 0 && t.wmu.TryLock() {
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
	if err := writeReply(t.c.bw, r); err != nil {
		t.werr = err
		t.writeFailed(err)
		return
	}
	if flush {
		t.flushLocked()
	}
}

// flushLocked sends what the buffer holds unless an earlier write failed;
// wmu is held.
func (t *transmission) flushLocked() {
	if t.werr != nil {
		return
	}
	if err := t.c.bw.Flush(); err != nil {
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
