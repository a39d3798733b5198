package api

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/node"
)

// newNodeAPI runs the API over an engine with a node service (no identity
// yet) and serves the node's peer API on a loopback TLS port.
func newNodeAPI(t *testing.T) (*Client, *node.Service, string) {
	t.Helper()
	dir := t.TempDir()
	ns, err := node.Open(filepath.Join(dir, "node"), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(t.Context(), engine.Config{DataDir: dir, NBDAddr: "", Node: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv := httptest.NewServer(NewHandler(eng, Options{Access: Access{Local: true}}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := &http.Server{Handler: ns.Handler(nil), ReadHeaderTimeout: 10 * time.Second}
	go peer.Serve(tls.NewListener(ln, ns.ServerTLS()))
	t.Cleanup(func() { peer.Close() })
	return c, ns, ln.Addr().String()
}

func TestNodeAPI(t *testing.T) {
	a, _, _ := newNodeAPI(t)
	b, _, baddr := newNodeAPI(t)
	ctx := t.Context()

	_, err := a.Node(ctx)
	if st, code := apiCode(t, err); st != http.StatusConflict || code != apischema.CodeNodeNoIdentity || !strings.Contains(err.Error(), "node init") {
		t.Fatalf("node before init: %d %s %v", st, code, err)
	}
	if _, err := a.InitNode(ctx, "bad name"); err == nil {
		t.Fatal("init accepted a bad name")
	} else if st, code := apiCode(t, err); st != http.StatusBadRequest || code != apischema.CodeInvalidArgument {
		t.Errorf("bad name: %d %s", st, code)
	}
	ai, err := a.InitNode(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if ai.Name != "node-a" || !strings.HasPrefix(ai.Fingerprint, "SHA256:") || !strings.HasPrefix(ai.PairingCode, strings.TrimPrefix(ai.Fingerprint, "SHA256:")+"-") ||
		ai.CodeExpires == nil || len(ai.Peers) != 0 {
		t.Errorf("init: %+v", ai)
	}
	_, err = a.InitNode(ctx, "again")
	if st, code := apiCode(t, err); st != http.StatusConflict || code != apischema.CodeNodeExists {
		t.Errorf("init twice: %d %s", st, code)
	}
	bi, err := b.InitNode(ctx, "node-b")
	if err != nil {
		t.Fatal(err)
	}

	_, err = a.PairNode(ctx, baddr, "garbage")
	if st, code := apiCode(t, err); st != http.StatusBadRequest || code != apischema.CodeNodeBadCode {
		t.Errorf("pair with a malformed code: %d %s", st, code)
	}
	p, err := a.PairNode(ctx, baddr, bi.PairingCode)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "node-b" || p.Fingerprint != bi.Fingerprint || p.Addr != baddr {
		t.Errorf("paired %+v, want node-b %s at %s", p, bi.Fingerprint, baddr)
	}
	// The code is used up; GET /v1/node shows none, POST makes a fresh one.
	_, err = a.PairNode(ctx, baddr, bi.PairingCode)
	if st, code := apiCode(t, err); st != http.StatusBadRequest || code != apischema.CodeNodeBadCode {
		t.Errorf("pair again with a used code: %d %s %v", st, code, err)
	}
	if bn, err := b.Node(ctx); err != nil || bn.PairingCode != "" {
		t.Errorf("GET /v1/node: %+v %v, want no pairing code", bn, err)
	}
	fresh, err := b.NewPairingCode(ctx)
	if err != nil || fresh.Code == bi.PairingCode || fresh.Expires.IsZero() {
		t.Errorf("fresh code %+v %v", fresh, err)
	}
	peers, err := b.NodePeers(ctx)
	if err != nil || len(peers) != 1 || peers[0].Name != "node-a" || peers[0].Fingerprint != ai.Fingerprint {
		t.Errorf("B's peers %+v %v, want node-a", peers, err)
	}
	got, err := a.Node(ctx)
	if err != nil || len(got.Peers) != 1 || got.Peers[0].Name != "node-b" {
		t.Errorf("A's node %+v %v", got, err)
	}

	if err := a.UnpairNode(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	err = a.UnpairNode(ctx, "node-b")
	if st, code := apiCode(t, err); st != http.StatusNotFound || code != apischema.CodeNodeNotPaired {
		t.Errorf("unpair twice: %d %s", st, code)
	}
	if peers, err := a.NodePeers(ctx); err != nil || len(peers) != 0 {
		t.Errorf("A's peers after unpair %+v %v", peers, err)
	}
}

func TestNodeAPIPairErrors(t *testing.T) {
	a, _, _ := newNodeAPI(t)
	b, _, baddr := newNodeAPI(t)
	c, _, _ := newNodeAPI(t)
	ctx := t.Context()
	for i, cl := range []*Client{a, b, c} {
		if _, err := cl.InitNode(ctx, []string{"a", "b", "c"}[i]); err != nil {
			t.Fatal(err)
		}
	}
	bi, _ := b.Node(ctx)
	ci, _ := c.Node(ctx)
	bcode, err := b.NewPairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ccode, err := c.NewPairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bhex, bsecret, _ := strings.Cut(bcode.Code, "-")
	chex, _, _ := strings.Cut(ccode.Code, "-")

	_, err = a.PairNode(ctx, baddr, chex+"-"+bsecret)
	if st, code := apiCode(t, err); st != http.StatusBadGateway || code != apischema.CodeNodeFingerprintMismatch ||
		!strings.Contains(err.Error(), bi.Fingerprint) || !strings.Contains(err.Error(), ci.Fingerprint) {
		t.Errorf("man in the middle: %d %s %v", st, code, err)
	}
	_, err = a.PairNode(ctx, baddr, bhex+"-"+strings.Repeat("A", 26))
	if st, code := apiCode(t, err); st != http.StatusBadRequest || code != apischema.CodeNodeBadCode || !strings.Contains(err.Error(), "wrong, used or expired code") {
		t.Errorf("wrong secret: %d %s %v", st, code, err)
	}
	_, err = a.PairNode(ctx, "127.0.0.1:1", bcode.Code)
	if st, code := apiCode(t, err); st != http.StatusBadGateway || code != apischema.CodeNodeUnreachable {
		t.Errorf("nobody there: %d %s %v", st, code, err)
	}
	if peers, _ := b.NodePeers(ctx); len(peers) != 0 {
		t.Errorf("B holds %+v after failed pairings", peers)
	}
}

func TestNodeAPIDisabled(t *testing.T) {
	_, c, _ := newTestAPI(t)
	_, err := c.Node(t.Context())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented || ae.Code != apischema.CodeNodeDisabled {
		t.Errorf("node without a service: %v", err)
	}
}
