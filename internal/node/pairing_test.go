package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPairCodeSingleUse(t *testing.T) {
	a, b, c := newNode(t, "node-a"), newNode(t, "node-b"), newNode(t, "node-c")
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	b.now = clock.now
	baddr := serve(t, b, nil)
	code := mustCode(t, b)
	if _, err := a.Pair(t.Context(), baddr, code); err != nil {
		t.Fatal(err)
	}
	// The same code again, even from the node that used it: refused.
	for _, n := range []*Service{c, a} {
		if _, err := n.Pair(t.Context(), baddr, code); !errors.Is(err, ErrBadCode) {
			t.Fatalf("reused code: got %v, want ErrBadCode", err)
		}
		clock.advance(pairRetryDelay) // past the wrong-secret delay
	}
	if _, ok := b.Peers().Get(fingerprintOf(t, c)); ok {
		t.Errorf("a used code paired node-c")
	}
	// A fresh code works.
	if _, err := c.Pair(t.Context(), baddr, mustCode(t, b)); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
}

func TestPairCodeExpires(t *testing.T) {
	a, b := newNode(t, "node-a"), newNode(t, "node-b")
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	b.now = clock.now
	baddr := serve(t, b, nil)

	pc, err := b.NewPairingCode()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pc.Expires, clock.now().Add(CodeTTL); !got.Equal(want) {
		t.Errorf("expires %v, want %v", got, want)
	}
	clock.advance(CodeTTL)
	_, err = a.Pair(t.Context(), baddr, pc.Code)
	if !errors.Is(err, ErrBadCode) || !strings.Contains(err.Error(), "node show") {
		t.Fatalf("expired code: got %v, want ErrBadCode saying to run node show", err)
	}
	clock.advance(pairRetryDelay)

	// One instant before its end, a code still works.
	pc, err = b.NewPairingCode()
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(CodeTTL - time.Nanosecond)
	if _, err := a.Pair(t.Context(), baddr, pc.Code); err != nil {
		t.Fatalf("code within its TTL: %v", err)
	}
}

func TestPairCodeBound(t *testing.T) {
	b := newNode(t, "node-b")
	var codes []string
	for range maxPendingCodes + 2 {
		codes = append(codes, mustCode(t, b))
	}
	b.mu.Lock()
	n := len(b.codes)
	b.mu.Unlock()
	if got, want := n, maxPendingCodes; got != want {
		t.Fatalf("%d pending codes, want %d", got, want)
	}
	// The oldest were dropped; the newest work.
	clock := &fakeClock{t: time.Now()}
	b.now = clock.now
	_, oldest, _ := strings.Cut(codes[0], "-")
	if _, err := b.verifyPairSecret(oldest); !errors.Is(err, ErrBadCode) {
		t.Errorf("dropped code: got %v, want ErrBadCode", err)
	}
	clock.advance(pairRetryDelay)
	_, newest, _ := strings.Cut(codes[len(codes)-1], "-")
	if _, err := b.verifyPairSecret(newest); err != nil {
		t.Errorf("newest code: %v", err)
	}
}

func TestPairCodeWithoutIdentity(t *testing.T) {
	if _, err := newNode(t, "").NewPairingCode(); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("got %v, want ErrNoIdentity", err)
	}
}

func TestObsoleteSecretFileIgnored(t *testing.T) {
	// A node directory of an older build holds a long-lived pair.secret:
	// it loads, and that secret does not pair.
	dir := filepath.Join(t.TempDir(), "node")
	if _, err := Init(dir, "old"); err != nil {
		t.Fatal(err)
	}
	old := strings.Repeat("A", 26)
	if err := os.WriteFile(filepath.Join(dir, obsoleteSecretFile), []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.verifyPairSecret(old); !errors.Is(err, ErrBadCode) {
		t.Errorf("old long-lived secret: got %v, want ErrBadCode", err)
	}
}

func TestPairCodeRace(t *testing.T) {
	// Many pairings racing with one code: exactly one gets through.
	b := newNode(t, "node-b")
	_, secret, _ := strings.Cut(mustCode(t, b), "-")
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := b.verifyPairSecret(secret)
			errs <- err
		}()
	}
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrBadCode) && !errors.Is(err, ErrRateLimited):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d racing uses of one code succeeded, want 1", ok, n)
	}
}
