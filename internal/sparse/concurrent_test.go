package sparse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sync/errgroup"
)

// Many goroutines allocate, rewrite and zero distinct grains while others
// flush and read; afterwards every grain reads back, through us after a
// reopen and through qemu-img, and no two grains share a sector.
func TestConcurrentAllocateAndFlush(t *testing.T) {
	const capacity = 8 << 20 // 128 grains
	path := newDelta(t, t.TempDir(), "d.vmdk", capacity, ParentRef{})
	e := openExtent(t, path, false)
	gs := int(e.GrainSize())
	want := make([]byte, capacity)
	const workers = 8
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var writers, background errgroup.Group
	for w := range workers {
		writers.Go(func() error {
			for g := int64(w); g < e.Grains(); g += workers {
				p := pattern(uint64(g), gs)
				if err := e.AllocateGrain(ctx, g, p); err != nil {
					return err
				}
				if err := e.WriteGrain(ctx, g, 10, []byte{byte(g)}); err != nil {
					return err
				}
				p[10] = byte(g)
				if g%7 == 0 {
					if err := e.SetZero(ctx, g); err != nil {
						return err
					}
					clear(p)
				}
				got := make([]byte, gs)
				if err := e.ReadGrain(ctx, g, 0, got); err != nil {
					return err
				}
				if !bytes.Equal(got, p) {
					return fmt.Errorf("grain %d reads back wrong while others allocate", g)
				}
				copy(want[int(g)*gs:], p) // distinct ranges per goroutine
			}
			return nil
		})
	}
	for range 2 {
		background.Go(func() error {
			for ctx.Err() == nil {
				if err := e.Flush(ctx); err != nil && ctx.Err() == nil {
					return err
				}
			}
			return nil
		})
	}
	background.Go(func() error {
		for ctx.Err() == nil {
			for g := range e.Grains() {
				if st := e.Lookup(g); st.Kind == Data && st.Sector < e.hdr.Overhead {
					return errors.New("Lookup returned a sector inside the metadata")
				}
			}
		}
		return nil
	})
	if err := writers.Wait(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := background.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e = openExtent(t, path, true)
	defer e.Close()
	if got := view(t, e, nil); !bytes.Equal(got, want) {
		t.Fatalf("after reopen: %s", firstDiff(got, want))
	}
	seen := map[uint64]int64{}
	for g := range e.Grains() {
		if st := e.Lookup(g); st.Kind == Data {
			if other, dup := seen[st.Sector]; dup {
				t.Fatalf("grains %d and %d share sector %d", other, g, st.Sector)
			}
			seen[st.Sector] = g
		}
	}
	run(t, "qemu-img", "check", "-q", path)
	if got := qemuRaw(t, path); !bytes.Equal(got, want) {
		t.Fatalf("qemu-img: %s", firstDiff(got, want))
	}
}
