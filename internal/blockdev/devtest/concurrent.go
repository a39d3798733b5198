package devtest

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// testConcurrentWriters runs writers on disjoint stripes of the device
// (writes, FUA writes, zeroes), readers and flushes at the same time, then
// checks that every writer's last data landed. Run it under -race.
func testConcurrentWriters(t *testing.T, s *suite) {
	m := s.device(t)
	const workers = 8
	stripe := max(m.mb, 4096/m.mb*m.mb) + m.mb // odd stripe width: requests straddle 4 KiB blocks
	if m.mb == 1 {
		stripe = 4096 + 123
	}
	nStripes := m.size / stripe
	ctx := t.Context()
	final := make([][]byte, nStripes) // last content of each stripe; each index owned by one worker
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for round := range 3 {
				for i := int64(w); i < nStripes; i += workers {
					off := i * stripe
					if (i+int64(round))%5 == 0 {
						if err := m.dev.WriteZeroes(ctx, off, stripe, 0); err != nil {
							t.Errorf("worker %d: WriteZeroes(%d): %v", w, off, err)
							return
						}
						final[i] = make([]byte, stripe)
						continue
					}
					p := randomBytes(rng, stripe)
					var flags blockdev.WriteFlags
					if round == 1 {
						flags = m.fua()
					}
					if err := m.dev.WriteAt(ctx, p, off, flags); err != nil {
						t.Errorf("worker %d: WriteAt(%d): %v", w, off, err)
						return
					}
					final[i] = p
				}
			}
		}()
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			p := make([]byte, 3*stripe)
			for range 200 {
				off := rng.Int64N((m.size-int64(len(p)))/m.mb) * m.mb
				if err := m.dev.ReadAt(ctx, p, off); err != nil {
					t.Errorf("reader %d: ReadAt(%d): %v", r, off, err)
					return
				}
			}
			if err := m.dev.Flush(ctx); err != nil {
				t.Errorf("reader %d: Flush: %v", r, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, p := range final {
		copy(m.shadow[int64(i)*stripe:], p)
	}
	m.checkAll()
}
