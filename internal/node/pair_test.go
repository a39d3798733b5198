package node

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func TestPairMutual(t *testing.T) {
	a, b := newNode(t, "node-a"), newNode(t, "node-b")
	baddr := serve(t, b, nil)
	ctx := t.Context()

	p, err := a.Pair(ctx, baddr, mustCode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Name, "node-b"; got != want {
		t.Errorf("peer name %q, want %q", got, want)
	}
	if got, want := p.Fingerprint, fingerprintOf(t, b); got != want {
		t.Errorf("peer fingerprint %s, want %s", got, want)
	}
	if got, want := p.Addr, baddr; got != want {
		t.Errorf("peer addr %s, want %s", got, want)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("stored peer: %v", err)
	}
	// B trusts A in turn, with A's certificate.
	pa, ok := b.Peers().Get(fingerprintOf(t, a))
	if !ok {
		t.Fatalf("B does not hold A after pairing: %+v", b.Peers().List())
	}
	if got, want := pa.Name, "node-a"; got != want {
		t.Errorf("B's peer name %q, want %q", got, want)
	}
	if err := pa.Validate(); err != nil {
		t.Errorf("B's peer: %v", err)
	}
	if got, want := len(a.Peers().List())+len(b.Peers().List()), 2; got != want {
		t.Errorf("%d peers in both stores, want %d", got, want)
	}

	// Both stores survive a reopen.
	for _, s := range []*Service{a, b} {
		re, err := Open(s.Dir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(re.Peers().List()), 1; got != want {
			t.Errorf("%s reopened: %d peers, want %d", s.Dir(), got, want)
		}
	}

	// A paired node says hello.
	var h Hello
	pc := a.PeerClient(baddr, p.Fingerprint)
	defer pc.CloseIdleConnections()
	if err := pc.Do(ctx, http.MethodGet, apischema.PeerHello, nil, &h); err != nil {
		t.Fatal(err)
	}
	if got, want := h, (Hello{Name: "node-b", Fingerprint: p.Fingerprint}); got != want {
		t.Errorf("hello %+v, want %+v", got, want)
	}

	// Pairing again is idempotent.
	if _, err := a.Pair(ctx, baddr, mustCode(t, b)); err != nil {
		t.Fatalf("pair again: %v", err)
	}
	if got, want := len(b.Peers().List()), 1; got != want {
		t.Errorf("B holds %d peers after pairing twice, want %d", got, want)
	}
}

func TestPairWrongSecret(t *testing.T) {
	a, b := newNode(t, "node-a"), newNode(t, "node-b")
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	b.now = clock.now
	baddr := serve(t, b, nil)
	ctx := t.Context()

	good := mustCode(t, b)
	fpHex, _, _ := strings.Cut(good, "-")
	bad := fpHex + "-" + strings.Repeat("A", 26)
	_, err := a.Pair(ctx, baddr, bad)
	if !errors.Is(err, ErrBadCode) {
		t.Fatalf("wrong secret: got %v, want ErrBadCode", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Code != apischema.CodeBadCode || !strings.Contains(re.Msg, "wrong, used or expired code") {
		t.Errorf("wrong secret: got %#v, want a 403 bad_code RemoteError saying wrong, used or expired code", re)
	}
	if got := len(a.Peers().List()) + len(b.Peers().List()); got != 0 {
		t.Errorf("a wrong secret added %d peers", got)
	}

	// Right after a wrong secret even the right one waits.
	if _, err := a.Pair(ctx, baddr, good); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("right secret within the delay: got %v, want ErrRateLimited", err)
	}
	if got := len(b.Peers().List()); got != 0 {
		t.Errorf("a rate-limited attempt added %d peers", got)
	}
	clock.advance(pairRetryDelay)
	if _, err := a.Pair(ctx, baddr, good); err != nil {
		t.Fatalf("right secret after the delay: %v", err)
	}
}

func TestPairFingerprintMismatch(t *testing.T) {
	// B's address, but the code names C: whoever answers at B's address
	// is not the node the operator meant (a man in the middle).
	a, b, c := newNode(t, "node-a"), newNode(t, "node-b"), newNode(t, "node-c")
	var reached atomic.Int32
	baddr := serve(t, b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	_, bsecret, _ := strings.Cut(mustCode(t, b), "-")
	chex, _, _ := strings.Cut(mustCode(t, c), "-")

	_, err := a.Pair(t.Context(), baddr, chex+"-"+bsecret)
	if !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("got %v, want ErrFingerprintMismatch", err)
	}
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("got %T, want a *MismatchError", err)
	}
	if got, want := me.Want, fingerprintOf(t, c); got != want {
		t.Errorf("mismatch want %s, expected %s", got, want)
	}
	if got, want := me.Got, fingerprintOf(t, b); got != want {
		t.Errorf("mismatch got %s, expected %s", got, want)
	}
	if !strings.Contains(err.Error(), me.Want) || !strings.Contains(err.Error(), me.Got) {
		t.Errorf("message %q does not name both fingerprints", err)
	}
	if got := len(a.Peers().List()) + len(b.Peers().List()); got != 0 {
		t.Errorf("a mismatched pairing added %d peers", got)
	}
}

func TestUnpairedRefused(t *testing.T) {
	a, b := newNode(t, "node-a"), newNode(t, "node-b")
	var reached atomic.Int32
	baddr := serve(t, b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	ctx := t.Context()
	pc := a.PeerClient(baddr, fingerprintOf(t, b))
	defer pc.CloseIdleConnections()

	for _, path := range []string{"/peer/v1/other", apischema.PeerHello} {
		err := pc.Do(ctx, http.MethodGet, path, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Code != apischema.CodeNotPaired {
			t.Errorf("GET %s unpaired: got %v, want 403 not_paired", path, err)
		}
		if !errors.Is(err, ErrNotPaired) {
			t.Errorf("GET %s unpaired: %v does not wrap ErrNotPaired", path, err)
		}
	}

	// A client with no certificate at all.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("https://"+baddr+"/peer/v1/other", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusForbidden; got != want || !strings.Contains(string(body), `"`+apischema.CodeNotPaired+`"`) {
		t.Errorf("no client cert: %d %s, want %d not_paired", got, body, want)
	}
	resp, err = hc.Post("https://"+baddr+apischema.PeerPair, "application/json", strings.NewReader(`{"code_secret":"x","name":"n"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusUnauthorized; got != want {
		t.Errorf("pair without a client cert: %d, want %d", got, want)
	}
	if got := reached.Load(); got != 0 {
		t.Errorf("next ran %d times for unpaired clients", got)
	}
}

func TestPairedReachesNext(t *testing.T) {
	a, b := newNode(t, "node-a"), newNode(t, "node-b")
	type seen struct {
		peer Peer
		ok   bool
		path string
	}
	got := make(chan seen, 1)
	baddr := serve(t, b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PeerFrom(r.Context())
		got <- seen{p, ok, r.URL.Path}
		writeJSON(w, http.StatusOK, map[string]string{"hi": p.Name})
	}))
	ctx := t.Context()
	if _, err := a.Pair(ctx, baddr, mustCode(t, b)); err != nil {
		t.Fatal(err)
	}
	pc := a.PeerClient(baddr, fingerprintOf(t, b))
	defer pc.CloseIdleConnections()
	var out map[string]string
	if err := pc.Do(ctx, http.MethodPost, "/peer/v1/other", map[string]int{"x": 1}, &out); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if !s.ok || s.peer.Name != "node-a" || s.peer.Fingerprint != fingerprintOf(t, a) || s.path != "/peer/v1/other" {
		t.Errorf("next saw %+v, want peer node-a on /peer/v1/other", s)
	}
	if got, want := out["hi"], "node-a"; got != want {
		t.Errorf("reply %v, want hi=%s", out, want)
	}

	// Unpaired on B's side: refused again, next not run.
	if _, err := b.Unpair("node-a"); err != nil {
		t.Fatal(err)
	}
	if err := pc.Do(ctx, http.MethodGet, "/peer/v1/other", nil, nil); !errors.Is(err, ErrNotPaired) {
		t.Errorf("after unpair: got %v, want ErrNotPaired", err)
	}
	if len(got) != 0 {
		t.Errorf("next ran after unpair")
	}
}

func TestPairNameConflict(t *testing.T) {
	a1, a2, b := newNode(t, "twin"), newNode(t, "twin"), newNode(t, "node-b")
	baddr := serve(t, b, nil)
	if _, err := a1.Pair(t.Context(), baddr, mustCode(t, b)); err != nil {
		t.Fatal(err)
	}
	_, err := a2.Pair(t.Context(), baddr, mustCode(t, b))
	if !errors.Is(err, ErrPeerConflict) {
		t.Fatalf("second node named twin: got %v, want ErrPeerConflict", err)
	}
	p, ok := b.Peers().Get(fingerprintOf(t, a1))
	if !ok || p.Name != "twin" || len(b.Peers().List()) != 1 {
		t.Errorf("B's store changed: %+v", b.Peers().List())
	}
}

func TestTLSWithoutIdentity(t *testing.T) {
	b := newNode(t, "")
	if _, err := b.ClientTLS("SHA256:00"); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("ClientTLS: got %v, want ErrNoIdentity", err)
	}
	if _, err := b.ServerTLS().GetConfigForClient(&tls.ClientHelloInfo{}); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("server handshake: got %v, want ErrNoIdentity", err)
	}
	if _, err := b.Pair(t.Context(), "127.0.0.1:1", strings.Repeat("ab", 32)+"-"+strings.Repeat("A", 26)); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("Pair: got %v, want ErrNoIdentity", err)
	}

	// A listener started before init serves once the identity exists.
	baddr := serve(t, b, nil)
	a := newNode(t, "node-a")
	if _, err := a.Pair(t.Context(), baddr, strings.Repeat("ab", 32)+"-"+strings.Repeat("A", 26)); !errors.Is(err, ErrUnreachable) {
		t.Errorf("pair before B's init: got %v, want ErrUnreachable (handshake refused)", err)
	}
	if _, err := b.Init("node-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pair(t.Context(), baddr, mustCode(t, b)); err != nil {
		t.Fatalf("pair after B's init: %v", err)
	}
}

func TestPairBadInput(t *testing.T) {
	a := newNode(t, "node-a")
	if _, err := a.Pair(t.Context(), "127.0.0.1:1", "nonsense"); !errors.Is(err, ErrBadCode) {
		t.Errorf("malformed code: got %v, want ErrBadCode", err)
	}
	if _, err := a.Pair(t.Context(), "127.0.0.1:1", mustCode(t, a)); !errors.Is(err, ErrBadCode) {
		t.Errorf("own code: got %v, want ErrBadCode", err)
	}
	if _, err := a.Pair(t.Context(), "127.0.0.1:1", strings.Repeat("ab", 32)+"-"+strings.Repeat("A", 26)); !errors.Is(err, ErrUnreachable) {
		t.Errorf("nobody listening: got %v, want ErrUnreachable", err)
	}
}
