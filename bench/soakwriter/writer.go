package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/nbd"
)

// Exit statuses of write: the harness expects exitConnLost when it killed the daemon.
const (
	exitConnLost = 3
	// maxDepth bounds --depth: each worker holds one request of up to maxBlocks blocks.
	maxDepth = 64
	// maxBlocks is the largest request, 256 KiB: big enough to span CBT's 64 KiB blocks and the
	// chain's grains, small enough that a trial issues many requests.
	maxBlocks = 64
)

// writer is one session of the load.
type writer struct {
	c       *nbd.Client
	log     *opLog
	session uint64
	nblk    int64
	opTime  time.Duration

	next   atomic.Uint64 // last n used in a SEQ
	stop   atomic.Bool
	lost   atomic.Bool // the connection failed: the daemon is gone
	dropAt uint64      // fault injection: the first write with n >= dropAt is acknowledged unsent
	drop   sync.Once

	mu     sync.Mutex     // guards busy
	busy   map[int64]bool // blocks under a request in flight (and the dropped write's, for ever)
	counts [4]atomic.Int64
}

func runWrite(args []string) error {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	uri := fs.String("uri", "", "NBD URI of the export (nbd+unix:///VOL?socket=PATH)")
	logPath := fs.String("log", "", "session log to append to")
	sess := fs.Uint64("session", 1, "session number (unique per volume: it prefixes every SEQ)")
	seed := fs.Uint64("seed", 1, "random seed")
	depth := fs.Int("depth", 4, "requests in flight")
	dur := fs.Duration("duration", 0, "stop after this long (0: until SIGTERM or the connection fails)")
	opTime := fs.Duration("op-timeout", 2*time.Minute, "a request that takes longer fails the session (a hung daemon)")
	fsyncLog := fs.Bool("fsync-log", false, "fdatasync the log after every record (survives the host, not only the process)")
	dropAfter := fs.Uint64("fault-drop-after", 0, "fault injection: log the first write after this many requests as acknowledged without sending it (verify must report it lost)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *uri == "" || *logPath == "" || *sess == 0 || *sess >= 1<<(64-seqSession)-1 {
		return fmt.Errorf("--uri, --log and a --session in 1..2^32-2 are required")
	}
	if *depth < 1 || *depth > maxDepth {
		return fmt.Errorf("--depth %d: want 1..%d", *depth, maxDepth)
	}
	t, err := nbd.ParseURI(*uri)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := nbd.Dial(ctx, t, nbd.ClientOptions{})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := openLog(*logPath, *fsyncLog)
	if err != nil {
		return err
	}
	defer l.Close()
	w := &writer{c: c, log: l, session: *sess, nblk: c.Size() / blockSize, opTime: *opTime,
		busy: map[int64]bool{}, dropAt: *dropAfter}
	if w.nblk < maxBlocks {
		return fmt.Errorf("export is %d bytes: want at least %d", c.Size(), maxBlocks*blockSize)
	}
	if err := l.rec("S %d %d", *sess, blockSize); err != nil {
		return err
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; w.stop.Store(true) }()
	if *dur > 0 {
		time.AfterFunc(*dur, func() { w.stop.Store(true) })
	}
	var wg sync.WaitGroup
	errs := make([]error, *depth)
	for i := range *depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.work(rand.New(rand.NewPCG(*seed, *sess<<8|uint64(i))))
		}()
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		// A clean stop: make everything acknowledged durable, so the next check is exact.
		err = w.flush()
	}
	fmt.Fprintf(os.Stderr, "soakwriter write: session %d: %d writes, %d zeroes, %d trims, %d flushes acknowledged\n",
		*sess, w.counts[0].Load(), w.counts[1].Load(), w.counts[2].Load(), w.counts[3].Load())
	if err != nil && w.lost.Load() {
		return exitError{exitConnLost, err}
	}
	return err
}

// work issues requests until stop; it returns the error that ended the session early.
func (w *writer) work(r *rand.Rand) error {
	for !w.stop.Load() {
		var err error
		switch p := r.IntN(100); {
		case p < 10:
			err = w.flush()
		case p < 55:
			err = w.write(r, kindWrite, false)
		case p < 70:
			err = w.write(r, kindWrite, true)
		case p < 90:
			err = w.write(r, kindZero, r.IntN(4) == 0)
		default:
			err = w.write(r, kindTrim, r.IntN(4) == 0)
		}
		if err != nil {
			w.stop.Store(true)
			return err
		}
	}
	return nil
}

func (w *writer) seq() uint64 { return w.session<<seqSession | w.next.Add(1) }

// flush sends a FLUSH: it covers every write whose A record is already in the log.
func (w *writer) flush() error {
	seq := w.seq()
	if err := w.log.rec("I %d F 0 0 0", seq); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.opTime)
	defer cancel()
	return w.done(seq, 3, w.c.Flush(ctx))
}

// write sends one write, write zeroes or trim over a random range no other request in flight
// touches, and holds the range until its outcome is in the log.
func (w *writer) write(r *rand.Rand, kind byte, fua bool) error {
	n := int64(1) << r.IntN(7) // 1..64 blocks, mostly small
	n = min(n+r.Int64N(n), maxBlocks)
	var blk int64
	for {
		blk = r.Int64N(w.nblk - n + 1)
		if w.claim(blk, n) {
			break
		}
	}
	seq := w.seq()
	f := 0
	var flags blockdev.WriteFlags
	if fua {
		f, flags = 1, blockdev.FUA
	}
	if err := w.log.rec("I %d %c %d %d %d", seq, kind, f, blk, n); err != nil {
		return err
	}
	if kind == kindWrite && w.dropAt > 0 && seq&(1<<seqSession-1) >= w.dropAt {
		dropped := false
		w.drop.Do(func() { dropped = true })
		if dropped {
			// Fault injection: the range stays claimed, so no later request overwrites the proof.
			if err := w.log.rec("# fault: write %d (blocks %d+%d) acknowledged but never sent", seq, blk, n); err != nil {
				return err
			}
			return w.log.rec("A %d", seq)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.opTime)
	defer cancel()
	var err error
	slot := 0
	switch kind {
	case kindWrite:
		buf := make([]byte, n*blockSize)
		for i := range n {
			fill(buf[i*blockSize:(i+1)*blockSize], seq, blk+i)
		}
		err = w.c.WriteAt(ctx, buf, blk*blockSize, flags)
	case kindZero:
		slot = 1
		if r.IntN(2) == 0 {
			flags |= blockdev.NoHole
		}
		err = w.c.WriteZeroes(ctx, blk*blockSize, n*blockSize, flags)
	case kindTrim:
		slot = 2
		err = w.c.Trim(ctx, blk*blockSize, n*blockSize, flags)
	}
	err = w.done(seq, slot, err)
	w.release(blk, n)
	return err
}

// done logs a request's outcome. An error reply from the server is logged and the load goes on;
// any other error means the connection is gone and ends the session.
func (w *writer) done(seq uint64, slot int, err error) error {
	if err == nil {
		w.counts[slot].Add(1)
		return w.log.rec("A %d", seq)
	}
	if lerr := w.log.rec("E %d %v", seq, err); lerr != nil {
		return lerr
	}
	var e *nbd.Errno
	if errors.As(err, &e) {
		return nil
	}
	w.lost.Store(true)
	return err
}

func (w *writer) claim(blk, n int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for b := blk; b < blk+n; b++ {
		if w.busy[b] {
			return false
		}
	}
	for b := blk; b < blk+n; b++ {
		w.busy[b] = true
	}
	return true
}

func (w *writer) release(blk, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for b := blk; b < blk+n; b++ {
		delete(w.busy, b)
	}
}
