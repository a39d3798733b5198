package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/nbd"
)

// chunkLen is how much verify reads at a time from the source and the replica.
const chunkLen = 4 << 20

// reportMax bounds the mismatches verify describes one by one (all are counted).
const reportMax = 10

// verifyStats is what one check found; the harness sums the printed fields over trials.
type verifyStats struct {
	issued, acked, durable, inflight, failed int
	verified, lost, lostBaseline, lostBlocks int
	unflushedMissing                         int
	cbtChecked, cbtMiss                      int
	replicaBlocks, divergent                 int
}

func runVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	uri := fs.String("uri", "", "NBD URI of the volume (read through the daemon)")
	statePath := fs.String("state", "", "baseline state file (read, then replaced by what this check found)")
	logPath := fs.String("log", "", "session log to check (empty: check the baseline only)")
	replica := fs.String("replica", "", "replica to compare with the volume, block by block: a raw file or an NBD URI")
	bitmap := fs.String("bitmap", "", "CBT bitmap that was cleared when the session started: it must cover every change")
	strict := fs.Bool("strict", false, "no crash happened: every acknowledged request must be there")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *uri == "" || *statePath == "" {
		return fmt.Errorf("--uri and --state are required")
	}
	ctx := context.Background()
	src, err := dialURI(ctx, *uri, *bitmap)
	if err != nil {
		return err
	}
	defer src.Close()
	nblk := src.Size() / blockSize
	base, err := loadState(*statePath, nblk)
	if err != nil {
		return err
	}
	s := &session{perBlk: map[int64][]int{}}
	if *logPath != "" {
		if s, err = parseLog(*logPath, *strict); err != nil {
			return err
		}
	}
	var dirty []bool
	if *bitmap != "" {
		if dirty, err = dirtyBlocks(ctx, src, "qemu:dirty-bitmap:"+*bitmap, nblk); err != nil {
			return err
		}
	}
	var rep reader
	if *replica != "" {
		if rep, err = openReplica(ctx, *replica); err != nil {
			return err
		}
		defer rep.Close()
	}

	var st verifyStats
	next := slices.Clone(base)
	lostOps := map[int]bool{}
	missing := map[int]bool{}
	scratch := make([]byte, blockSize)
	buf := make([]byte, chunkLen)
	rbuf := make([]byte, chunkLen)
	reported := 0
	for off := int64(0); off < nblk*blockSize; off += chunkLen {
		n := min(chunkLen, nblk*blockSize-off)
		if err := src.ReadAt(ctx, buf[:n], off); err != nil {
			return fmt.Errorf("read volume at %d: %w", off, err)
		}
		if rep != nil {
			if err := rep.ReadAt(ctx, rbuf[:n], off); err != nil {
				return fmt.Errorf("read replica at %d: %w", off, err)
			}
		}
		for i := int64(0); i < n; i += blockSize {
			b := (off + i) / blockSize
			p := buf[i : i+blockSize]
			obs, ok := classify(p, b, scratch)
			c := s.candidates(b, base[b])
			match := c.anything || (ok && slices.Contains(c.values, obs))
			switch {
			case !ok:
				next[b] = unknown
			default:
				next[b] = obs
			}
			if !match {
				st.lostBlocks++
				if c.durable >= 0 {
					lostOps[c.durable] = true
				} else {
					st.lostBaseline++
				}
				if reported < reportMax {
					reported++
					fmt.Fprintf(os.Stderr, "soakwriter verify: LOST block %d (offset %d): holds %s, expected one of %s%s\n",
						b, b*blockSize, describe(obs, ok), describeAll(c.values), s.describeDurable(c.durable))
				}
			}
			if ops := s.perBlk[b]; len(ops) > 0 {
				o := &s.ops[ops[len(ops)-1]]
				if o.kind == kindWrite && o.acked && !o.durable && (!ok || obs != o.seq) {
					missing[ops[len(ops)-1]] = true
				}
			}
			if dirty != nil {
				need := base[b] != unknown && (!ok || obs != base[b])
				for _, j := range s.perBlk[b] {
					o := &s.ops[j]
					need = need || (o.durable && o.kind != kindTrim)
				}
				if need {
					st.cbtChecked++
					if !dirty[b] {
						st.cbtMiss++
						if reported < reportMax {
							reported++
							fmt.Fprintf(os.Stderr, "soakwriter verify: CBT MISS block %d (offset %d): changed (holds %s, was %s) but bitmap %s says clean\n",
								b, b*blockSize, describe(obs, ok), describe(base[b], true), *bitmap)
						}
					}
				}
			}
			if rep != nil {
				st.replicaBlocks++
				if !equal(p, rbuf[i:i+blockSize]) {
					st.divergent++
					if reported < reportMax {
						reported++
						ro, rok := classify(rbuf[i:i+blockSize], b, scratch)
						fmt.Fprintf(os.Stderr, "soakwriter verify: DIVERGENT block %d (offset %d): volume holds %s, replica holds %s\n",
							b, b*blockSize, describe(obs, ok), describe(ro, rok))
					}
				}
			}
		}
	}
	for i := range s.ops {
		o := &s.ops[i]
		st.issued++
		switch {
		case o.acked:
			st.acked++
		case o.failed:
			st.failed++
		default:
			st.inflight++
		}
		if o.durable && o.kind != kindFlush && o.kind != kindTrim {
			st.durable++
			if lostOps[i] {
				st.lost++
			} else {
				st.verified++
			}
		}
	}
	st.unflushedMissing = len(missing)

	// What was read becomes the baseline only once the daemon says it is durable.
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := src.Flush(fctx); err != nil {
		return fmt.Errorf("flush the volume before saving the state: %w", err)
	}
	if err := saveState(*statePath, next); err != nil {
		return err
	}
	fmt.Printf("soak-verify session=%d issued=%d acked=%d durable=%d inflight=%d failed=%d verified=%d lost=%d lost_blocks=%d lost_baseline_blocks=%d unflushed_missing=%d cbt_checked=%d cbt_miss=%d replica_blocks=%d divergent_blocks=%d\n",
		s.id, st.issued, st.acked, st.durable, st.inflight, st.failed, st.verified, st.lost, st.lostBlocks,
		st.lostBaseline, st.unflushedMissing, st.cbtChecked, st.cbtMiss, st.replicaBlocks, st.divergent)
	if st.lostBlocks > 0 || st.cbtMiss > 0 || st.divergent > 0 {
		return fmt.Errorf("%d blocks lost (%d durable writes), %d CBT misses, %d divergent blocks", st.lostBlocks, st.lost, st.cbtMiss, st.divergent)
	}
	return nil
}

// cands is what a block may hold after a crash.
type cands struct {
	values   []uint64
	anything bool // the baseline is unknown and nothing durable replaced it
	durable  int  // the last durable request on the block (-1: none, the baseline stands)
}

// candidates walks a block's requests from the last: each may have landed, until a durable
// write or write zeroes, below which nothing may show. A trim leaves zeros or what was there.
func (s *session) candidates(b int64, base uint64) cands {
	c := cands{durable: -1}
	ops := s.perBlk[b]
	for i := len(ops) - 1; i >= 0; i-- {
		o := &s.ops[ops[i]]
		c.values = append(c.values, o.value())
		if o.durable && o.kind != kindTrim {
			c.durable = ops[i]
			return c
		}
	}
	if base == unknown {
		c.anything = true
	}
	c.values = append(c.values, base)
	return c
}

func (s *session) describeDurable(i int) string {
	if i < 0 {
		return " (no durable request in this session: the state of the last check)"
	}
	o := &s.ops[i]
	return fmt.Sprintf(" (durable: %c seq %d blocks %d+%d fua=%v)", o.kind, o.seq, o.blk, o.nblk, o.fua)
}

func describe(v uint64, ok bool) string {
	switch {
	case !ok || v == unknown:
		return "unrecognised data"
	case v == 0:
		return "zeros"
	}
	return fmt.Sprintf("write %d (session %d #%d)", v, v>>seqSession, v&(1<<seqSession-1))
}

func describeAll(vs []uint64) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, describe(v, true))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// reader is what verify reads: the volume through the daemon, or the replica.
type reader interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	Close() error
}

func dialURI(ctx context.Context, uri, bitmap string) (*nbd.Client, error) {
	t, err := nbd.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	var opts nbd.ClientOptions
	if bitmap != "" {
		opts.MetaContexts = []string{"qemu:dirty-bitmap:" + bitmap}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return nbd.Dial(dctx, t, opts)
}

func openReplica(ctx context.Context, s string) (reader, error) {
	if strings.HasPrefix(s, "nbd") {
		return dialURI(ctx, s, "")
	}
	f, err := os.Open(s)
	if err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	return fileReader{f}, nil
}

// fileReader reads a raw file; past its end it reads zeros (a sparse file a bit short).
type fileReader struct{ f *os.File }

func (r fileReader) ReadAt(_ context.Context, p []byte, off int64) error {
	n, err := r.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		return nil
	}
	return err
}

func (r fileReader) Close() error { return r.f.Close() }

// dirtyBlocks asks the daemon which blocks the bitmap marks dirty.
func dirtyBlocks(ctx context.Context, c *nbd.Client, meta string, nblk int64) ([]bool, error) {
	d := make([]bool, nblk)
	size := nblk * blockSize
	for off := int64(0); off < size; {
		ext, err := c.BlockStatus(ctx, meta, off, size-off)
		if err != nil {
			return nil, fmt.Errorf("block status %s at %d: %w", meta, off, err)
		}
		if len(ext) == 0 {
			return nil, fmt.Errorf("block status %s at %d: no extents", meta, off)
		}
		for _, e := range ext {
			if e.Length <= 0 {
				return nil, fmt.Errorf("block status %s at %d: extent of length %d", meta, off, e.Length)
			}
			if e.Flags&1 != 0 {
				for b := off / blockSize; b*blockSize < off+e.Length && b < nblk; b++ {
					d[b] = true
				}
			}
			off += e.Length
			if off >= size {
				break
			}
		}
	}
	return d, nil
}
