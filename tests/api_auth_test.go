//go:build integration

package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// apiTCP is a daemon whose API also listens on HTTPS (serve --api tcp:) with
// one allowed host directory, and the files a remote client needs.
type apiTCP struct {
	d     *daemon
	addr  string // 127.0.0.1:PORT
	ca    string // a copy of the daemon's DATA/api/ca-cert.pem, as a remote host holds it
	allow string // the --allow-path directory
}

func startAPITCP(t *testing.T) *apiTCP {
	t.Helper()
	a := &apiTCP{allow: t.TempDir()}
	a.addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	a.d = startDaemonOpts(t, daemonOpts{Args: []string{"--api", "tcp:" + a.addr, "--allow-path", a.allow}})
	ca, err := os.ReadFile(filepath.Join(a.d.dir, "api", "ca-cert.pem"))
	if err != nil {
		t.Fatalf("the daemon made no API CA: %v", err)
	}
	a.ca = filepath.Join(t.TempDir(), "ca-cert.pem")
	if err := os.WriteFile(a.ca, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// token makes a token over the unix socket and returns it.
func (a *apiTCP) token(t *testing.T, name, role string) string {
	t.Helper()
	var nt struct {
		Name, Role, Token string
	}
	out := a.d.CLI("token", "create", name, "--role", role, "--json")
	if err := json.Unmarshal([]byte(out), &nt); err != nil || !strings.HasPrefix(nt.Token, "es1_") || nt.Role != role {
		t.Fatalf("token create --json: %v: %q", err, out)
	}
	return nt.Token
}

// remote runs the CLI as a remote host would: over TCP, with the CA copy,
// a data dir that does not exist here, and token as EXTRASPHERE_TOKEN
// ("" sets none).
func (a *apiTCP) remote(t *testing.T, token string, args ...string) (int, string) {
	t.Helper()
	full := append([]string{"EXTRASPHERE_TOKEN=" + token, esBin, "--data", "/nonexistent", "--api", "tcp:" + a.addr, "--api-ca", a.ca}, args...)
	return runStatus(t, "env", full...)
}

// curl sends one request and returns the HTTP status and body.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out := runStatus(t, "curl", append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...)
	if code != 0 {
		return 0, out
	}
	i := strings.LastIndexByte(out, '\n')
	st, err := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	if err != nil {
		t.Fatalf("curl %v: %q", args, out)
	}
	return st, out[:i]
}

func TestAPITCPTokens(t *testing.T) {
	a := startAPITCP(t)
	admin := a.token(t, "admin1", "admin")
	reader := a.token(t, "reader1", "read")

	// No token, a wrong token: refused, saying what to do.
	if code, out := a.remote(t, "", "volume", "list"); code != 1 || !strings.Contains(out, "EXTRASPHERE_TOKEN") {
		t.Errorf("no token: exit %d: %s", code, out)
	}
	if code, out := a.remote(t, "es1_"+strings.Repeat("A", 43), "volume", "list"); code != 1 || !strings.Contains(out, "not valid") {
		t.Errorf("wrong token: exit %d: %s", code, out)
	}
	// The admin token works remotely; the read token reads but cannot write.
	if code, out := a.remote(t, admin, "volume", "create", "v1", "--size", "1M"); code != 0 {
		t.Fatalf("admin create: exit %d: %s", code, out)
	}
	if code, out := a.remote(t, reader, "volume", "list"); code != 0 || !strings.Contains(out, "v1") {
		t.Errorf("reader list: exit %d: %s", code, out)
	}
	if code, out := a.remote(t, reader, "volume", "create", "v2", "--size", "1M"); code != 1 || !strings.Contains(out, "needs role operator") {
		t.Errorf("reader create: exit %d: %s", code, out)
	}
	if code, out := a.remote(t, reader, "token", "list"); code != 1 || !strings.Contains(out, "needs role admin") {
		t.Errorf("reader token list: exit %d: %s", code, out)
	}
	// On the daemon's host the CLI finds the CA in the data dir.
	code, out := runStatus(t, "env", "EXTRASPHERE_TOKEN="+admin, esBin, "--data", a.d.dir, "--api", "tcp:"+a.addr, "volume", "list")
	if code != 0 || !strings.Contains(out, "v1") {
		t.Errorf("local CA: exit %d: %s", code, out)
	}
	// Another CA: the client refuses the daemon.
	other := startAPITCP(t)
	code, out = runStatus(t, "env", "EXTRASPHERE_TOKEN="+admin, esBin, "--data", "/nonexistent", "--api", "tcp:"+a.addr, "--api-ca", other.ca, "volume", "list")
	if code != 1 || !strings.Contains(out, "certificate") {
		t.Errorf("wrong CA: exit %d: %s", code, out)
	}

	// token list shows names and roles, never a token; rm revokes at once.
	out = a.d.CLI("token", "list")
	if !strings.Contains(out, "admin1") || !strings.Contains(out, "reader1") || strings.Contains(out, "es1_") {
		t.Errorf("token list: %s", out)
	}
	a.d.CLI("token", "rm", "reader1")
	if code, out := a.remote(t, reader, "volume", "list"); code != 1 || !strings.Contains(out, "not valid") {
		t.Errorf("removed token: exit %d: %s", code, out)
	}
	// The file holds hashes only.
	data, err := os.ReadFile(filepath.Join(a.d.dir, "api", "tokens.json"))
	if err != nil || strings.Contains(string(data), admin) || !strings.Contains(string(data), "sha256") {
		t.Errorf("tokens.json holds a token or no hash (%v): %s", err, data)
	}
	if fi, err := os.Stat(filepath.Join(a.d.dir, "api", "tokens.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tokens.json mode: %v %v", fi.Mode(), err)
	}
	// Tokens survive a restart.
	a.d.Stop()
	a.d.Restart()
	if code, out := a.remote(t, admin, "volume", "list"); code != 0 {
		t.Errorf("admin after restart: exit %d: %s", code, out)
	}
}

func TestAPITCPRawHTTP(t *testing.T) {
	a := startAPITCP(t)
	admin := a.token(t, "admin1", "admin")
	url := "https://" + a.addr
	auth := "Authorization: Bearer " + admin
	body := `{"name":"evil","size":4096}`

	// The reproduction: a web page's text/plain POST with a foreign
	// Origin. Refused on TCP (with or without a token) and on the socket.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"TCPNoToken", []string{"--cacert", a.ca, url + "/v1/volumes"}},
		{"TCPToken", []string{"--cacert", a.ca, "-H", auth, url + "/v1/volumes"}},
		{"Socket", []string{"--unix-socket", filepath.Join(a.d.dir, "api.sock"), "http://localhost/v1/volumes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := curl(t, append([]string{"-X", "POST", "-H", "Content-Type: text/plain", "-H", "Origin: https://evil.example", "-d", body}, tc.args...)...)
			if st != 403 || !strings.Contains(out, apischema.CodeForbiddenOrigin) {
				t.Errorf("cross-site POST: %d %s", st, out)
			}
			// Without the Origin, text/plain is still refused.
			st, out = curl(t, append([]string{"-X", "POST", "-H", "Content-Type: text/plain", "-d", body}, tc.args...)...)
			if want := 415; tc.name == "TCPNoToken" {
				if st != 401 {
					t.Errorf("text/plain POST without a token: %d %s, want 401", st, out)
				}
			} else if st != want || !strings.Contains(out, apischema.CodeUnsupportedMedia) {
				t.Errorf("text/plain POST: %d %s, want %d", st, out, want)
			}
		})
	}
	if code, out := a.d.CLIStatus("volume", "show", "evil"); code == 0 {
		t.Fatalf("a refused request created volume evil: %s", out)
	}

	// Importing /etc/shadow over TCP: refused, even for admin; so is a
	// symlink in the allowed directory that points at it, and ".." out of it.
	link := filepath.Join(a.allow, "innocent.raw")
	if err := os.Symlink("/etc/shadow", link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/shadow", link, a.allow + "/../../../../../../etc/shadow"} {
		st, out := curl(t, "--cacert", a.ca, "-H", auth, "-H", "Content-Type: application/json", "-X", "POST",
			"-d", `{"path":"`+p+`","format":"raw"}`, url+"/v1/volumes/stolen/import")
		if st != 403 || !strings.Contains(out, apischema.CodePathNotAllowed) {
			t.Errorf("import %s over TCP: %d %s", p, st, out)
		}
	}
	if code, out := a.remote(t, admin, "volume", "import", "stolen", "/etc/shadow"); code != 1 || !strings.Contains(out, "--allow-path") {
		t.Errorf("CLI import of /etc/shadow over TCP: exit %d: %s", code, out)
	}
	// Inside the allowed directory it works.
	img := filepath.Join(a.allow, "disk.raw")
	if err := os.WriteFile(img, []byte(strings.Repeat("data", 1024)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := a.remote(t, admin, "volume", "import", "good", img, "--format", "raw"); code != 0 {
		t.Errorf("import inside --allow-path: exit %d: %s", code, out)
	}

	// Plain HTTP and TLS 1.2 do not get an answer from the API.
	if st, out := curl(t, "-H", auth, "http://"+a.addr+"/v1/volumes"); st >= 200 && st < 300 {
		t.Errorf("plain HTTP: %d %s", st, out)
	}
	if st, out := curl(t, "--cacert", a.ca, "--tlsv1.2", "--tls-max", "1.2", "-H", auth, url+"/v1/volumes"); st != 0 {
		t.Errorf("TLS 1.2: %d %s, want the handshake refused", st, out)
	}
	if st, out := curl(t, "--cacert", a.ca, "-H", auth, url+"/v1/volumes"); st != 200 || !strings.Contains(out, "good") {
		t.Errorf("GET with the token: %d %s", st, out)
	}
}

// TestNodePairingCodeOnce: a pairing code of a real daemon pairs one node, once; a daemon restart
// voids the codes it handed out.
func TestNodePairingCodeOnce(t *testing.T) {
	a := startDaemonOpts(t, daemonOpts{Node: true, Name: "node-a"})
	b := startDaemonOpts(t, daemonOpts{Node: true, Name: "node-b"})
	c := startDaemonOpts(t, daemonOpts{Node: true, Name: "node-c"})
	code := func(d *daemon) string {
		var show struct {
			Code    string `json:"pairing_code"`
			Expires string `json:"pairing_code_expires"`
		}
		if err := json.Unmarshal([]byte(d.CLI("node", "show", "--json")), &show); err != nil || show.Code == "" || show.Expires == "" {
			t.Fatalf("node show --json: %v (%+v)", err, show)
		}
		return show.Code
	}
	used := code(b)
	a.CLI("node", "pair", b.nodeAddr(), "--code", used)
	if st, out := c.CLIStatus("node", "pair", b.nodeAddr(), "--code", used); st != 1 || !strings.Contains(out, "wrong, used or expired code") {
		t.Fatalf("pair with a used code: exit %d: %s", st, out)
	}
	unused := code(b)
	b.Stop()
	b.Restart()
	if st, out := c.CLIStatus("node", "pair", b.nodeAddr(), "--code", unused); st != 1 || !strings.Contains(out, "wrong, used or expired code") {
		t.Fatalf("pair with a code of the previous incarnation: exit %d: %s", st, out)
	}
	// A refusal holds every attempt back for a second (guessing is bounded); a restart forgets
	// that, so the fresh code below is checked at once.
	b.Stop()
	b.Restart()
	c.CLI("node", "pair", b.nodeAddr(), "--code", code(b))
	if out := b.CLI("node", "list"); !strings.Contains(out, "node-a") || !strings.Contains(out, "node-c") {
		t.Errorf("node-b's peers: %s", out)
	}
}
