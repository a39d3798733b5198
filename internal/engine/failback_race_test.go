package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Concurrent failback requests (a retried request, a second node's, a
// pause or resume from the CLI at the same instant) race on the old
// source's volume: at most one failback takes it, and afterwards the
// catalog and the volume agree: a replica record of the winner's
// generation, no mirror record, no mirror running. Run it with -race.
func TestAcceptFailbackConcurrent(t *testing.T) {
	wins := 0
	defer func() {
		if wins == 0 && !t.Failed() {
			t.Fatal("no round had a winning failback: the test checked nothing")
		}
	}()
	for round := range 20 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			e := openEngine(t, dir)
			mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
			if _, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "file://" + filepath.Join(t.TempDir(), "r.flat")}); err != nil {
				t.Fatal(err)
			}
			waitMirror(t, e, "v", mirror.StateInSync)
			// Make the record look like a mirror to node B's volume w:
			// rewritten in the catalog while the engine is stopped.
			p := node.Peer{Name: "b", Fingerprint: "fp-b", Addr: "127.0.0.1:1"}
			catPath := e.cfg.catalogPath()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			cat, err := catalog.Open(catPath)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := cat.Mirrors()
			if err != nil || len(recs) != 1 {
				t.Fatalf("mirror records %+v (%v)", recs, err)
			}
			rec := recs[0]
			rec.PeerFingerprint, rec.PeerVolume = p.Fingerprint, "w"
			oldGen := rec.Gen
			if err := errors.Join(cat.PutMirror(rec), cat.Close()); err != nil {
				t.Fatal(err)
			}
			e = openEngine(t, dir)
			defer e.Close()
			waitMirror(t, e, "v", mirror.StateInSync)

			const callers = 6
			var wg sync.WaitGroup
			errs := make([]error, callers)
			start := make(chan struct{})
			for i := range callers {
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = e.AcceptFailback(ctx, p, apischema.FailbackRequest{Volume: "v", OldGen: oldGen,
						NewGen: fmt.Sprintf("gen%d", i), SourceVolume: "w", Size: 1 << 20})
				}()
				go func() {
					defer wg.Done()
					<-start
					if i%2 == 0 {
						e.PauseMirror(ctx, "v")
					} else {
						e.ResumeMirror(ctx, "v")
					}
				}()
			}
			close(start)
			wg.Wait()

			won := -1
			for i, err := range errs {
				switch {
				case err == nil && won >= 0:
					t.Fatalf("failbacks %d and %d both succeeded", won, i)
				case err == nil:
					won = i
				case !errors.Is(err, errkind.ErrVolumeInUse):
					t.Fatalf("failback %d: %v, want success or errkind.ErrVolumeInUse", i, err)
				}
			}
			if won < 0 {
				return // every caller found the volume busy: nothing changed
			}
			wins++
			recs, err = e.cat.Mirrors()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 0 {
				t.Fatalf("after failback %d the catalog still holds a mirror record: %+v", won, recs)
			}
			reps, err := e.cat.Replicas()
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("gen%d", won); len(reps) != 1 || reps[0].Gen != want {
				t.Fatalf("after failback %d the replica records are %+v, want one of generation %s", won, reps, want)
			}
			e.mu.Lock()
			v := e.volumes["v"]
			e.mu.Unlock()
			if v.mirror() != nil {
				t.Fatal("a mirror still runs on the failed-back volume")
			}
		})
	}
}
