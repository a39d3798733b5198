package main

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/api"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/node"
)

// startNodeDaemon runs an engine with a node service behind an API server,
// and the node's peer API on a loopback TLS port; it returns the --api
// value and the node port.
func startNodeDaemon(t *testing.T) (apiURL, nodeAddr string) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := node.Open(filepath.Join(dir, "node"), node.Options{AdvertiseAddr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(t.Context(), engine.Config{DataDir: dir, Node: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv := httptest.NewServer(api.NewHandler(eng, api.Options{Access: api.Access{Local: true}}))
	t.Cleanup(srv.Close)
	peer := &http.Server{Handler: ns.Handler(nil), ReadHeaderTimeout: 10 * time.Second}
	go peer.Serve(tls.NewListener(ln, ns.ServerTLS()))
	t.Cleanup(func() { peer.Close() })
	return srv.URL, ln.Addr().String()
}

func TestNodeCommands(t *testing.T) {
	ctx := t.Context()
	apiA, _ := startNodeDaemon(t)
	apiB, addrB := startNodeDaemon(t)

	code, _, stderr := runCLI(t, ctx, "node", "show", "--api", apiA)
	if code != exitError || !strings.Contains(stderr, "no identity") || !strings.Contains(stderr, "extrasphere node init") {
		t.Fatalf("show before init: %d %q", code, stderr)
	}
	code, out, stderr := runCLI(t, ctx, "node", "init", "--name", "node-a", "--api", apiA)
	if code != 0 || !strings.Contains(out, "created node identity node-a") {
		t.Fatalf("init a: %d %q %q", code, out, stderr)
	}
	code, _, stderr = runCLI(t, ctx, "node", "init", "--name", "node-a", "--api", apiA)
	if code != exitError || !strings.Contains(stderr, "already exists") {
		t.Fatalf("init twice: %d %q", code, stderr)
	}
	if code, out, stderr = runCLI(t, ctx, "node", "init", "--name", "node-b", "--api", apiB); code != 0 {
		t.Fatalf("init b: %d %q %q", code, out, stderr)
	}

	code, out, _ = runCLI(t, ctx, "node", "show", "--api", apiB)
	m := regexp.MustCompile(`extrasphere node pair (\S+) --code (\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "fingerprint   SHA256:") {
		t.Fatalf("show b: %d %q", code, out)
	}
	if got, want := m[1], addrB; got != want {
		t.Errorf("show tells to pair with %s, want %s", got, want)
	}
	var infoB api.NodeInfo
	code, out, _ = runCLI(t, ctx, "node", "show", "--json", "--api", apiB)
	if code != 0 || json.Unmarshal([]byte(out), &infoB) != nil || infoB.PairingCode == "" || infoB.PairingCode == m[2] ||
		infoB.CodeExpires == nil {
		t.Fatalf("show --json: %d %q, want a fresh code with its expiry", code, out)
	}

	code, out, stderr = runCLI(t, ctx, "node", "pair", addrB, "--code", m[2], "--api", apiA)
	if code != 0 || !strings.Contains(out, "paired with node node-b at "+addrB) || !strings.Contains(out, "verified fingerprint "+infoB.Fingerprint) {
		t.Fatalf("pair: %d %q %q", code, out, stderr)
	}
	code, _, stderr = runCLI(t, ctx, "node", "pair", addrB, "--code", m[2], "--api", apiA)
	if code != exitError || !strings.Contains(stderr, "wrong, used or expired code") {
		t.Fatalf("pair again with the used code: %d %q", code, stderr)
	}
	code, out, _ = runCLI(t, ctx, "node", "list", "--api", apiB)
	if code != 0 || !strings.Contains(out, "node-a") {
		t.Fatalf("list on b: %d %q", code, out)
	}
	var peers []node.Peer
	code, out, _ = runCLI(t, ctx, "node", "list", "--json", "--api", apiA)
	if code != 0 || json.Unmarshal([]byte(out), &peers) != nil || len(peers) != 1 || peers[0].Fingerprint != infoB.Fingerprint {
		t.Fatalf("list --json on a: %d %q", code, out)
	}

	code, out, _ = runCLI(t, ctx, "node", "unpair", "node-b", "--api", apiA)
	if code != 0 || !strings.Contains(out, "unpaired node node-b") {
		t.Fatalf("unpair: %d %q", code, out)
	}
	code, _, stderr = runCLI(t, ctx, "node", "unpair", "node-b", "--api", apiA)
	if code != exitError || !strings.Contains(stderr, "not paired") {
		t.Fatalf("unpair twice: %d %q", code, stderr)
	}

	// A code of another node than the one at the address is refused.
	fpHex, secret, _ := strings.Cut(m[2], "-")
	wrong := strings.Repeat("0", len(fpHex)) + "-" + secret
	code, _, stderr = runCLI(t, ctx, "node", "pair", addrB, "--code", wrong, "--api", apiA)
	if code != exitError || !strings.Contains(stderr, "fingerprint mismatch") || !strings.Contains(stderr, infoB.Fingerprint) {
		t.Fatalf("pair with a wrong fingerprint: %d %q", code, stderr)
	}
}

func TestNodeUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"PairNoCode", []string{"node", "pair", "h:1"}, "--code is required"},
		{"PairNoAddr", []string{"node", "pair", "--code", "x"}, "needs 1 argument"},
		{"UnpairNoName", []string{"node", "unpair"}, "needs 1 argument"},
		{"ShowArgs", []string{"node", "show", "x"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, t.Context(), tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d stderr %q, want %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}
