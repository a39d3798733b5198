package engine

import (
	"slices"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/gate"
)

// A pivot is one change of a volume's stack while it is served: inserting
// or removing a filter (CBT, mirror), or putting new layers under the gate
// (snapshot, merge, revert, migration, promote). Every change goes the
// same way:
//
//	p, err := e.beginPivot(v) // holds I/O: in-flight requests finished, new ones wait
//	defer p.end()             // releases I/O; undoes what did not commit
//	... prepare; p.onAbort(undo) for each step that changed something ...
//	p.install(layers, edit)   // the filters over layers, behind the gate; edit updates v.files
//	p.commit()
//
// The caller holds v.snapMu, which orders pivots of one volume. install
// wraps and installs in one step: wrapping publishes the new layers to the
// mirror copier (mirror.Filter), so the two never part; and it changes
// v.layers and v.files under one hold of Engine.mu, as readers of the
// layers (chainops' layersOf) index the files by the chain's deltas. The undo steps
// run once, in reverse order, if end comes before commit; the stack, the
// layers and the files are then put back as they were.
type pivot struct {
	e      *Engine
	v      *volume
	h      *gate.Held
	layers blockdev.Device       // what was below the gate at begin
	files  datastore.VolumeFiles // v.files at begin
	undo   []func()
	moved  bool // install ran
	done   bool // commit ran
	ended  bool
}

// beginPivot holds v's I/O for a change of its stack, or says why the
// volume has no stack to change.
func (e *Engine) beginPivot(v *volume) (*pivot, error) {
	e.mu.Lock()
	g, layers, files := v.dev, v.layers, v.files
	e.mu.Unlock()
	if g == nil {
		return nil, errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", v.name, v.err)
	}
	files.Chain.Deltas = slices.Clone(files.Chain.Deltas)
	return &pivot{e: e, v: v, h: g.Hold(), layers: layers, files: files}, nil
}

// current is the device below the gate, as the I/O saw it last.
func (p *pivot) current() blockdev.Device { return p.h.Current() }

// onAbort registers a step that undoes a change made during the pivot.
func (p *pivot) onAbort(f func()) { p.undo = append(p.undo, f) }

// install puts the volume's filters over layers behind the gate and
// records layers as the volume's, with edit (nil for none) applied to its
// files in the same critical section. A pivot that only toggles a filter
// installs the layers it began with.
func (p *pivot) install(layers blockdev.Device, edit func(*datastore.VolumeFiles)) {
	p.h.Replace(p.v.wrap(layers))
	p.e.mu.Lock()
	p.v.layers = layers
	if edit != nil {
		edit(&p.v.files)
	}
	p.e.mu.Unlock()
	p.moved = true
}

// commit makes the change final: end no longer undoes it.
func (p *pivot) commit() { p.done = true }

// end releases the I/O hold and returns how long I/O waited. Without a
// commit it first undoes every registered step, newest first, and puts
// the stack back over the layers the pivot began with.
func (p *pivot) end() time.Duration {
	if p.ended {
		return 0
	}
	p.ended = true
	if !p.done {
		for i := len(p.undo) - 1; i >= 0; i-- {
			p.undo[i]()
		}
		if p.moved {
			p.install(p.layers, func(f *datastore.VolumeFiles) { *f = p.files })
		}
	}
	return p.h.Release()
}
