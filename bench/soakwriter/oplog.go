package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Request kinds as the log names them.
const (
	kindWrite  = 'W'
	kindZero   = 'Z'
	kindTrim   = 'T'
	kindFlush  = 'F'
	seqSession = 32 // a SEQ is SESSION<<seqSession | n: unique across sessions of one volume
)

// opLog appends records, each with one write(2) so a record is whole or absent.
type opLog struct {
	mu    sync.Mutex // guards f: records are appended one at a time, in the order they happen
	f     *os.File
	fsync bool
}

func openLog(path string, fsync bool) (*opLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &opLog{f: f, fsync: fsync}, nil
}

func (l *opLog) rec(format string, args ...any) error {
	line := fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteString(line); err != nil {
		return fmt.Errorf("append to log: %w", err)
	}
	if l.fsync {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("sync log: %w", err)
		}
	}
	return nil
}

func (l *opLog) Close() error { return l.f.Close() }

// op is one request of the log, with what the log says happened to it.
type op struct {
	seq     uint64
	kind    byte
	fua     bool
	blk     int64
	nblk    int64
	acked   bool
	failed  bool
	durable bool
	cover   []int // FLUSH only: the acknowledged, not yet durable writes when it was sent
}

// value is the content the op puts on each of its blocks (trim: see candidates).
func (o *op) value() uint64 {
	if o.kind == kindWrite {
		return o.seq
	}
	return 0
}

// session is one parsed log.
type session struct {
	id     uint64
	ops    []op
	perBlk map[int64][]int // block -> indexes of the ops on it, in log order
}

// parseLog reads a session log and works out which acknowledged requests are durable. With
// strict, every acknowledged request counts as durable (no crash happened: nothing may be lost).
func parseLog(path string, strict bool) (*session, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	s := &session{perBlk: map[int64][]int{}}
	bySeq := map[uint64]int{}
	var pending []int // acknowledged writes not yet durable
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fl := strings.Fields(line)
		bad := func() error { return fmt.Errorf("log %s line %d: malformed record %q", path, n, line) }
		num := func(i int) uint64 {
			if i >= len(fl) {
				err = bad()
				return 0
			}
			v, e := strconv.ParseUint(fl[i], 10, 64)
			if e != nil {
				err = bad()
			}
			return v
		}
		switch fl[0] {
		case "S":
			s.id = num(1)
			if bs := num(2); err == nil && bs != blockSize {
				return nil, fmt.Errorf("log %s: block size %d, this verifier checks %d", path, bs, blockSize)
			}
		case "I":
			if len(fl) != 6 || len(fl[2]) != 1 {
				return nil, bad()
			}
			o := op{seq: num(1), kind: fl[2][0], fua: num(3) == 1, blk: int64(num(4)), nblk: int64(num(5))}
			if err != nil {
				return nil, err
			}
			i := len(s.ops)
			if o.kind == kindFlush {
				o.cover = append([]int(nil), pending...)
			} else {
				for b := o.blk; b < o.blk+o.nblk; b++ {
					s.perBlk[b] = append(s.perBlk[b], i)
				}
			}
			bySeq[o.seq] = i
			s.ops = append(s.ops, o)
		case "A", "E":
			seq := num(1)
			if err != nil {
				return nil, err
			}
			i, ok := bySeq[seq]
			if !ok {
				return nil, fmt.Errorf("log %s line %d: %s of a request never issued", path, n, fl[0])
			}
			o := &s.ops[i]
			if fl[0] == "E" {
				o.failed = true
				continue
			}
			o.acked = true
			switch {
			case o.kind == kindFlush:
				for _, j := range o.cover {
					s.ops[j].durable = true
				}
				pending = slicesDeleteDurable(pending, s.ops)
			case o.fua || strict:
				o.durable = true
			default:
				pending = append(pending, i)
			}
		default:
			return nil, bad()
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	if strict {
		for i := range s.ops {
			if s.ops[i].acked {
				s.ops[i].durable = true
			}
		}
	}
	return s, nil
}

func slicesDeleteDurable(idx []int, ops []op) []int {
	out := idx[:0]
	for _, i := range idx {
		if !ops[i].durable {
			out = append(out, i)
		}
	}
	return out
}
