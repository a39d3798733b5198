package cbt

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
)

// Options configure a State.
type Options struct {
	Dir        string // where the files live ($DATA/cbt)
	Volume     string // the volume: files Dir/<Volume>.bitmaps and Dir/<Volume>.al
	Size       int64  // the volume's size in bytes
	ExtentSize int64  // AL extent size in bytes; 0 means DefaultExtentSize
	ALSlots    int    // most hot extents; 0 means DefaultALSlots
	Failpoints *failpoint.Set
	Logger     *slog.Logger
}

// State is the changed-block tracking of one volume: its bitmaps and its
// activity log. The volume owns it for its whole life, across every pivot
// of its stack; each Tracker built over the stack shares it. All methods
// are safe for concurrent use.
type State struct {
	volume    string
	size      int64
	nbits     int64 // blocks of Granularity bytes
	extSize   int64 // bytes per AL extent
	extBlocks int64 // blocks per AL extent
	slots     int   // most hot extents
	direct    int64 // a request spanning more extents bypasses the AL
	log       *slog.Logger

	// ioMu serialises every store call and guards alSeq and onDisk. It is
	// taken before mu, never while holding mu, so a snapshot taken under
	// mu after ioMu is never older than what the store already holds.
	ioMu   sync.Mutex
	st     store
	alSeq  uint64 // sequence of the newest AL record on disk (0: none)
	onDisk bool   // the bitmap file exists

	// mu guards everything below and every *bitmap.
	mu         sync.Mutex
	cond       *sync.Cond // on mu: durability reached, a slot freed, closed
	bitmaps    []*bitmap  // sorted by name
	hot        map[int64]*hotExt
	lru        *list.List // of *hotExt, most recently used in front
	gen        uint64     // bumped by every change of the hot set
	durableGen uint64     // gen of the newest durable AL record
	alWriting  bool       // a writer is persisting the AL
	evicted    []int64    // left the hot set since the last AL record: their pages go out before it
	closed     bool
	recovered  bool     // the last stop was not clean
	problems   []string // what load found wrong, for operators
}

// Open loads the volume's tracking state from opts.Dir (no files: no
// bitmaps). After an unclean stop every extent of the activity log counts
// as dirty in every bitmap, and the bitmap file is rewritten with that
// before Open returns. A damaged bitmap file is moved aside and reported
// by Problems; an error means the files could neither be read nor moved
// aside, and the volume must not be served (its writes could not be
// tracked truthfully).
func Open(opts Options) (*State, error) {
	s := newState(opts, newFileStore(opts.Dir, opts.Volume, opts.Failpoints))
	if err := s.load(); err != nil {
		s.st.close()
		return nil, err
	}
	return s, nil
}

// Fresh returns the empty state of a new volume, deleting files a
// removed volume of the same name may have left.
func Fresh(opts Options) (*State, error) {
	s := newState(opts, newFileStore(opts.Dir, opts.Volume, opts.Failpoints))
	if err := s.st.remove(); err != nil {
		return nil, fmt.Errorf("changed-block tracking of new volume %s: %w", opts.Volume, err)
	}
	return s, nil
}

func newState(opts Options, st store) *State {
	if opts.ExtentSize == 0 {
		opts.ExtentSize = DefaultExtentSize
	}
	if opts.ALSlots <= 0 {
		opts.ALSlots = DefaultALSlots
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// The extent size is a power-of-two multiple of Granularity (Record.Validate).
	es := max(opts.ExtentSize, Granularity)
	for es&(es-1) != 0 {
		es &= es - 1
	}
	s := &State{
		volume: opts.Volume, size: opts.Size, nbits: blocks(opts.Size),
		extSize: es, extBlocks: es / Granularity,
		slots: min(opts.ALSlots, MaxALSlots), log: opts.Logger, st: st,
		hot: map[int64]*hotExt{}, lru: list.New(),
	}
	s.direct = int64(max(1, min(16, s.slots/4)))
	s.cond = sync.NewCond(&s.mu)
	return s
}

// load reads the files (called once, before any I/O).
func (s *State) load() error {
	bm, al, err := s.st.load()
	if err != nil {
		return fmt.Errorf("load changed-block tracking of volume %s: %w (fix or remove the files to serve the volume without its bitmaps)", s.volume, err)
	}
	if bm == nil {
		if al != nil { // an AL left by an interrupted removal
			return s.st.remove()
		}
		return nil
	}
	h, err := DecodeHeader(bm)
	if err == nil && (h.Volume != s.volume || h.Size != s.size) {
		err = fmt.Errorf("bitmap file is for volume %s of %d bytes, not %s of %d: %w", h.Volume, h.Size, s.volume, s.size, ErrCorrupt)
	}
	if err != nil {
		return s.moveAside(err)
	}
	s.onDisk = true
	rewrite := false
	np := pagesPer(s.size)
	for k, e := range h.Bitmaps {
		b := newBitmap(e.Name, e.Created, s.nbits)
		bad := 0
		for p := range np {
			idx := 1 + int64(k)*np + p
			lo := idx * pageSize
			if lo+pageSize > int64(len(bm)) || decodePage(bm[lo:lo+pageSize], b.page(p), uint32(idx)) != nil {
				b.setPage(p)
				bad++
			}
		}
		b.maskTail()
		if bad > 0 {
			rewrite = true
			s.problem("bitmap %s: %d of %d pages unreadable (torn write?), counted dirty", e.Name, bad, np)
		}
		s.bitmaps = append(s.bitmaps, b)
	}
	rec, errs := newestRecord(al)
	if rec != nil {
		s.alSeq = rec.Seq // the next record must supersede it, even one not for this volume
	}
	if rec != nil && rec.Size != s.size {
		errs, rec = append(errs, fmt.Errorf("activity log is for %d bytes: %w", rec.Size, ErrCorrupt)), nil
	}
	switch {
	case rec == nil:
		s.recovered, rewrite = true, true
		for _, b := range s.bitmaps {
			b.setAll()
		}
		s.problem("activity log unreadable (%v): every block counted dirty", errors.Join(errs...))
	case !rec.Clean:
		s.recovered, rewrite = true, true
		for _, e := range rec.Extents {
			lo := e * rec.ExtentSize
			hi := min(lo+rec.ExtentSize, s.size)
			for _, b := range s.bitmaps {
				b.setRange(lo/Granularity, (hi-1)/Granularity)
			}
		}
		s.log.Warn("changed-block tracking: the last stop was not clean; the activity log's extents count as dirty",
			"volume", s.volume, "extents", len(rec.Extents), "extent_size", rec.ExtentSize)
	}
	if rewrite {
		// The recovered bits exist only in memory; the next AL record
		// would no longer list the extents they came from.
		if err := s.persistAll(); err != nil {
			return fmt.Errorf("load changed-block tracking of volume %s: save recovered bitmaps: %w", s.volume, err)
		}
	}
	return nil
}

// moveAside sets a damaged bitmap file aside and starts without bitmaps.
func (s *State) moveAside(cause error) error {
	suffix := ".broken-" + time.Now().UTC().Format("20060102T150405Z")
	if err := s.st.moveAside(suffix); err != nil {
		return fmt.Errorf("load changed-block tracking of volume %s: %w; and: %w", s.volume, cause, err)
	}
	s.problem("bitmap file unreadable (%v): moved aside with suffix %s; the volume's bitmaps are lost, so the next backup must be full", cause, suffix)
	return nil
}

// problem records (and logs) something load found wrong.
func (s *State) problem(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	s.log.Error("changed-block tracking: "+msg, "volume", s.volume)
	s.problems = append(s.problems, msg)
}

// Problems returns what loading found wrong, for operators.
func (s *State) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// Recovered reports whether the last stop was not clean (the activity
// log's extents were counted dirty at load).
func (s *State) Recovered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recovered
}

// Size is the volume size the state tracks.
func (s *State) Size() int64 { return s.size }
