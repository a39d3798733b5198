package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
)

// authAPI is a daemon's TCP door (HTTPS, tokens, --allow-path) and its
// local door, over one engine.
type authAPI struct {
	eng    *engine.Engine
	tokens *TokenStore
	tcp    string // https://127.0.0.1:PORT
	local  string // http://127.0.0.1:PORT, the local door's handler (as on the unix socket)
	caPEM  []byte
	allow  string // the allowed host directory (real path)
	out    string // a directory outside it (real path)
	secret map[Role]string
}

func newAuthAPI(t *testing.T) *authAPI {
	t.Helper()
	dir := t.TempDir()
	eng, err := engine.Open(t.Context(), engine.Config{DataDir: dir, NBDAddr: ""})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	a := &authAPI{eng: eng, secret: map[Role]string{}}
	if a.tokens, err = OpenTokens(filepath.Join(dir, "api")); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Role{RoleMetrics, RoleRead, RoleOperator, RoleAdmin} {
		secret, _, err := a.tokens.Create("t-"+r.String(), r)
		if err != nil {
			t.Fatal(err)
		}
		a.secret[r] = secret
	}
	a.allow = realDir(t, t.TempDir())
	a.out = realDir(t, t.TempDir())
	paths, err := NewPathPolicy([]string{a.allow})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLS(filepath.Join(dir, "api"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if a.caPEM, err = os.ReadFile(filepath.Join(dir, "api", CACertFile)); err != nil {
		t.Fatal(err)
	}
	tcp := httptest.NewUnstartedServer(NewHandler(eng, Options{Access: Access{Paths: paths}, Tokens: a.tokens}))
	tcp.TLS = cfg
	tcp.StartTLS()
	t.Cleanup(tcp.Close)
	a.tcp = tcp.URL
	local := httptest.NewServer(NewHandler(eng, Options{Access: Access{Local: true}, Tokens: a.tokens}))
	t.Cleanup(local.Close)
	a.local = local.URL
	return a
}

func realDir(t *testing.T, d string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// client returns an API client of the TCP door with role's token.
func (a *authAPI) client(t *testing.T, role Role) *Client {
	t.Helper()
	c, err := NewClientWith(a.tcp, ClientOptions{Token: a.secret[role], CAPEM: a.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// raw sends one request to base (a door) and returns the status and the
// error body (if JSON).
type rawReq struct {
	method, path, body string
	contentType        string // "" sends none
	origin             string // "" sends none
	token              string // "" sends none
}

func (a *authAPI) raw(t *testing.T, base string, q rawReq) (int, apischema.ErrorBody, http.Header) {
	t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), q.method, base+q.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if q.contentType != "" {
		req.Header.Set("Content-Type", q.contentType)
	}
	if q.origin != "" {
		req.Header.Set("Origin", q.origin)
	}
	if q.token != "" {
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	hc := http.DefaultClient
	if strings.HasPrefix(base, "https://") {
		cfg, err := ClientTLS(a.caPEM)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		hc = &http.Client{Transport: tr}
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb apischema.ErrorBody
	json.Unmarshal(data, &eb)
	return resp.StatusCode, eb, resp.Header
}

func TestAuthNoToken(t *testing.T) {
	a := newAuthAPI(t)
	for _, tc := range []struct{ name, token string }{
		{"None", ""},
		{"Garbage", "hello"},
		{"Forged", tokenPrefix + strings.Repeat("A", 43)},
		{"OtherScheme", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, eb, h := a.raw(t, a.tcp, rawReq{method: "GET", path: "/v1/volumes", token: tc.token})
			if st != http.StatusUnauthorized || eb.Code != apischema.CodeUnauthorized || !strings.Contains(eb.Error, "token") {
				t.Errorf("got %d %+v, want 401 unauthorized", st, eb)
			}
			if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want Bearer", got)
			}
		})
	}
	// A POST without a token creates nothing.
	st, _, _ := a.raw(t, a.tcp, rawReq{method: "POST", path: "/v1/volumes", body: `{"name":"x","size":4096}`, contentType: "application/json"})
	if st != http.StatusUnauthorized {
		t.Errorf("POST without token: %d, want 401", st)
	}
	if vs := a.eng.ListVolumes(t.Context()); len(vs) != 0 {
		t.Errorf("volumes %+v after refused requests", vs)
	}
	// A removed token stops working at once.
	if err := a.tokens.Remove("t-read"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := a.raw(t, a.tcp, rawReq{method: "GET", path: "/v1/volumes", token: a.secret[RoleRead]}); st != http.StatusUnauthorized {
		t.Errorf("removed token: %d, want 401", st)
	}
}

func TestAuthRoles(t *testing.T) {
	a := newAuthAPI(t)
	if _, err := a.client(t, RoleAdmin).CreateVolume(t.Context(), apischema.CreateVolumeRequest{Name: "v", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	const (
		ok  = 0 // allowed: anything but 401/403
		bad = http.StatusForbidden
	)
	for _, tc := range []struct {
		method, path, body string
		want               map[Role]int
	}{
		{"GET", "/metrics", "", map[Role]int{RoleMetrics: ok, RoleRead: ok, RoleOperator: ok, RoleAdmin: ok}},
		{"GET", "/v1/volumes", "", map[Role]int{RoleMetrics: bad, RoleRead: ok, RoleOperator: ok, RoleAdmin: ok}},
		{"GET", "/v1/info", "", map[Role]int{RoleMetrics: bad, RoleRead: ok, RoleOperator: ok, RoleAdmin: ok}},
		{"GET", "/v1/node", "", map[Role]int{RoleMetrics: bad, RoleRead: ok, RoleOperator: ok, RoleAdmin: ok}},
		{"POST", "/v1/volumes", `{"name":"w","size":4096}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: ok, RoleAdmin: ok}},
		{"DELETE", "/v1/jobs/1", "", map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: ok, RoleAdmin: ok}},
		{"POST", "/v1/snapshots", `{"volumes":["v"],"name":"s"}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: ok, RoleAdmin: ok}},
		{"POST", "/v1/datastores", `{"name":"d","path":"/nonexistent"}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"POST", "/v1/repos", `{"name":"r","location":"/nonexistent"}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"DELETE", "/v1/repos/r", "", map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"POST", "/v1/node/code", "", map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"POST", "/v1/node/pair", `{"addr":"127.0.0.1:1","code":"x"}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"GET", "/v1/tokens", "", map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"GET", "/v1/jobs/../tokens", "", map[Role]int{RoleRead: bad, RoleAdmin: ok}}, // cleaned by the mux: a redirect, then checked
		{"POST", "/v1/tokens", `{"name":"n","role":"read"}`, map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad, RoleAdmin: ok}},
		{"DELETE", "/v1/tokens/t-metrics", "", map[Role]int{RoleMetrics: bad, RoleRead: bad, RoleOperator: bad}},
	} {
		for _, role := range []Role{RoleMetrics, RoleRead, RoleOperator, RoleAdmin} {
			want, ok2 := tc.want[role]
			if !ok2 {
				continue
			}
			t.Run(strings.ReplaceAll(tc.method+tc.path, "/", "_")+"_"+role.String(), func(t *testing.T) {
				ct := ""
				if tc.body != "" {
					ct = "application/json"
				}
				st, eb, _ := a.raw(t, a.tcp, rawReq{method: tc.method, path: tc.path, body: tc.body, contentType: ct, token: a.secret[role]})
				switch {
				case want == bad && (st != bad || eb.Code != apischema.CodeForbidden || !strings.Contains(eb.Error, "needs role")):
					t.Errorf("got %d %+v, want 403 forbidden", st, eb)
				case want == ok && (st == http.StatusUnauthorized || eb.Code == apischema.CodeForbidden):
					t.Errorf("got %d %+v, want it allowed", st, eb)
				}
			})
		}
	}
}

func TestAuthContentType(t *testing.T) {
	a := newAuthAPI(t)
	for _, door := range []struct{ name, base, token string }{{"TCP", a.tcp, a.secret[RoleAdmin]}, {"Local", a.local, ""}} {
		t.Run(door.name, func(t *testing.T) {
			for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
				st, eb, _ := a.raw(t, door.base, rawReq{method: "POST", path: "/v1/volumes", body: `{"name":"x","size":4096}`, contentType: ct, token: door.token})
				if st != http.StatusUnsupportedMediaType || eb.Code != apischema.CodeUnsupportedMedia {
					t.Errorf("Content-Type %q: got %d %+v, want 415", ct, st, eb)
				}
			}
			if _, err := a.eng.GetVolume(t.Context(), "x"); err == nil {
				t.Fatal("a refused request created volume x")
			}
			st, eb, _ := a.raw(t, door.base, rawReq{method: "POST", path: "/v1/volumes", body: `{"name":"x` + door.name + `","size":4096}`,
				contentType: "application/json; charset=utf-8", token: door.token})
			if st != http.StatusCreated {
				t.Errorf("application/json: got %d %+v, want 201", st, eb)
			}
		})
	}
}

func TestAuthOrigin(t *testing.T) {
	a := newAuthAPI(t)
	// The reproduction: a web page's text/plain POST with its own
	// Origin, on either door, with or without a token.
	for _, door := range []struct{ name, base, token string }{{"TCP", a.tcp, a.secret[RoleAdmin]}, {"TCPNoToken", a.tcp, ""}, {"Local", a.local, ""}} {
		t.Run(door.name, func(t *testing.T) {
			for _, ct := range []string{"text/plain", "application/json"} {
				st, eb, _ := a.raw(t, door.base, rawReq{method: "POST", path: "/v1/volumes", body: `{"name":"evil","size":4096}`,
					contentType: ct, origin: "https://evil.example", token: door.token})
				if st != http.StatusForbidden || eb.Code != apischema.CodeForbiddenOrigin {
					t.Errorf("%s POST with a foreign Origin: got %d %+v, want 403 forbidden_origin", ct, st, eb)
				}
			}
			for _, o := range []string{"null", "http://" + strings.TrimPrefix(strings.TrimPrefix(door.base, "https://"), "http://") + ".evil"} {
				if st, eb, _ := a.raw(t, door.base, rawReq{method: "GET", path: "/v1/volumes", origin: o, token: door.token}); st != http.StatusForbidden {
					t.Errorf("GET with Origin %q: got %d %+v, want 403", o, st, eb)
				}
			}
		})
	}
	if vs := a.eng.ListVolumes(t.Context()); len(vs) != 0 {
		t.Fatalf("volumes %+v after cross-site requests", vs)
	}
	// The API's own origin passes.
	st, eb, _ := a.raw(t, a.tcp, rawReq{method: "GET", path: "/v1/volumes", origin: a.tcp, token: a.secret[RoleRead]})
	if st != http.StatusOK {
		t.Errorf("own origin: got %d %+v, want 200", st, eb)
	}
}

func TestAuthPaths(t *testing.T) {
	a := newAuthAPI(t)
	ctx := t.Context()
	op := a.client(t, RoleOperator)
	admin := a.client(t, RoleAdmin)
	img := filepath.Join(a.allow, "disk.raw")
	secret := filepath.Join(a.out, "shadow")
	for _, f := range []string{img, secret} {
		if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustSymlink(t, secret, filepath.Join(a.allow, "link-to-secret"))
	mustSymlink(t, a.out, filepath.Join(a.allow, "link-to-out"))
	mustSymlink(t, filepath.Join(a.out, "new"), filepath.Join(a.allow, "dangling"))
	if err := os.Mkdir(filepath.Join(a.allow, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	escapes := map[string]string{
		"Outside":           secret,
		"EtcShadow":         "/etc/shadow",
		"DotDot":            a.allow + "/../" + filepath.Base(a.out) + "/shadow",
		"DotDotViaSub":      a.allow + "/sub/../../" + filepath.Base(a.out) + "/shadow",
		"SymlinkFile":       filepath.Join(a.allow, "link-to-secret"),
		"SymlinkDir":        filepath.Join(a.allow, "link-to-out", "shadow"),
		"SymlinkDirThenDot": filepath.Join(a.allow, "link-to-out") + "/../" + filepath.Base(a.out) + "/shadow",
		"Relative":          "disk.raw",
	}
	for name, p := range escapes {
		t.Run("Import"+name, func(t *testing.T) {
			_, err := op.Import(ctx, "imp", apischema.ImportRequest{Path: p, Format: "raw"})
			if st, code := apiCode(t, err); st != http.StatusForbidden || code != apischema.CodePathNotAllowed {
				t.Errorf("import %s: %d %s %v, want 403 path_not_allowed", p, st, code, err)
			}
		})
	}
	newEscapes := map[string]string{
		"Outside":      filepath.Join(a.out, "new.raw"),
		"SymlinkDir":   filepath.Join(a.allow, "link-to-out", "new.raw"),
		"Dangling":     filepath.Join(a.allow, "dangling"),
		"DotDot":       a.allow + "/../" + filepath.Base(a.out) + "/new.raw",
		"MissingDirUp": a.allow + "/nope/../../" + filepath.Base(a.out) + "/new.raw",
	}
	if _, err := admin.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "v", Size: 4096}); err != nil {
		t.Fatal(err)
	}
	for name, p := range newEscapes {
		t.Run("Export"+name, func(t *testing.T) {
			_, err := op.Export(ctx, "v", apischema.ExportRequest{Path: p})
			if st, code := apiCode(t, err); st != http.StatusForbidden || code != apischema.CodePathNotAllowed {
				t.Errorf("export %s: %d %s %v, want 403 path_not_allowed", p, st, code, err)
			}
		})
	}
	others := []struct {
		name string
		call func() error
	}{
		{"Datastore", func() error { _, err := admin.AddDatastore(ctx, "d", filepath.Join(a.out, "ds")); return err }},
		{"RepoDir", func() error {
			_, err := admin.AddRepo(ctx, apischema.RepoRequest{Name: "r", Location: filepath.Join(a.out, "repo"), Init: true})
			return err
		}},
		{"RepoPasswordFile", func() error {
			_, err := admin.AddRepo(ctx, apischema.RepoRequest{Name: "r", Location: filepath.Join(a.allow, "repo"), PasswordFile: secret, Init: true})
			return err
		}},
		{"RestoreToFile", func() error {
			_, err := op.Restore(ctx, apischema.RestoreRequest{Backup: "x", ToFile: filepath.Join(a.out, "r.raw")})
			return err
		}},
		{"MirrorFile", func() error {
			_, err := op.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "file://" + filepath.Join(a.out, "m.raw"), Mode: "sync"})
			return err
		}},
		{"MirrorFileLocalhost", func() error {
			_, err := op.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "file://localhost" + filepath.Join(a.allow, "link-to-out", "m.raw"), Mode: "sync"})
			return err
		}},
		{"MirrorUnixSocket", func() error {
			_, err := op.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "nbd+unix:///e?socket=" + filepath.Join(a.out, "s.sock"), Mode: "sync"})
			return err
		}},
	}
	for _, tc := range others {
		t.Run(tc.name, func(t *testing.T) {
			st, code := apiCode(t, tc.call())
			if st != http.StatusForbidden || code != apischema.CodePathNotAllowed {
				t.Errorf("%d %s, want 403 path_not_allowed", st, code)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(a.out, "ds")); err == nil {
		t.Errorf("a refused datastore add created its directory")
	}

	// Inside the allowed directory: import and export work, a new
	// datastore too (a path under a missing directory resolves through
	// its nearest existing ancestor).
	j, err := op.Import(ctx, "imp", apischema.ImportRequest{Path: img, Format: "raw"})
	if err != nil {
		t.Fatalf("import inside: %v", err)
	}
	if f, err := op.WaitJob(ctx, j.ID, 0, nil); err != nil || f.Error != "" {
		t.Fatalf("import job %+v %v", f, err)
	}
	if _, err := op.Export(ctx, "v", apischema.ExportRequest{Path: filepath.Join(a.allow, "sub", "out.raw")}); err != nil {
		t.Errorf("export inside: %v", err)
	}
	if _, err := admin.AddDatastore(ctx, "d", filepath.Join(a.allow, "a", "b")); err != nil {
		t.Errorf("datastore inside: %v", err)
	}

	// The local door allows any path.
	lc, err := NewClient(a.local)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Import(ctx, "imp2", apischema.ImportRequest{Path: secret, Format: "raw"}); err != nil {
		t.Errorf("import outside over the local door: %v", err)
	}
}

func TestAuthNoAllowedPath(t *testing.T) {
	// With no --allow-path, the TCP door allows no host path at all.
	p := &PathPolicy{}
	if _, err := p.Check(t.TempDir()); err == nil {
		t.Error("empty policy allowed a path")
	}
	pol, err := NewPathPolicy([]string{"/"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pol.Check("/etc/../etc/hostname"); err != nil || got != "/etc/hostname" {
		t.Errorf("policy / : %q %v", got, err)
	}
	if _, err := NewPathPolicy([]string{filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing allowed directory was accepted")
	}
}

func TestAuthRedactsHostPaths(t *testing.T) {
	a := newAuthAPI(t)
	missing := filepath.Join(a.allow, "missing.raw")
	for _, tc := range []struct {
		role Role
		leak bool
	}{{RoleOperator, false}, {RoleAdmin, true}} {
		_, err := a.client(t, tc.role).Import(t.Context(), "imp", apischema.ImportRequest{Path: missing, Format: "raw"})
		if err == nil {
			t.Fatalf("%s: import of a missing file succeeded", tc.role)
		}
		if got := strings.Contains(err.Error(), a.allow); got != tc.leak {
			t.Errorf("%s: message %q names the host path: %v, want %v", tc.role, err, got, tc.leak)
		}
	}
	// A path refusal to a non-admin names no host path either (not even
	// the allowed directories).
	_, err := a.client(t, RoleOperator).Import(t.Context(), "imp", apischema.ImportRequest{Path: "/etc/shadow"})
	if st, code := apiCode(t, err); st != http.StatusForbidden || code != apischema.CodePathNotAllowed ||
		strings.Contains(err.Error(), a.allow) || strings.Contains(err.Error(), "/etc") {
		t.Errorf("refusal to operator: %d %s %q", st, code, err)
	}
}

func TestRedactPaths(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"open /etc/shadow: permission denied", "open [path]: permission denied"},
		{`path "/srv/x.img" is bad`, `path "[path]" is bad`},
		{"target file:///mnt/r.raw failed.", "target file:[path] failed."},
		{"nbd+unix:///e?socket=/run/s.sock", "nbd+unix:[path]"},
		{"volume vm1 is in use by node-b/vm1", "volume vm1 is in use by node-b/vm1"},
		{"/a and (/b), [/c]", "[path] and ([path]), [[path]]"},
		{"no slash here", "no slash here"},
	} {
		if got := redactPaths(tc.in); got != tc.want {
			t.Errorf("redactPaths(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPolicyNamesRealRoutes(t *testing.T) {
	mux := (&server{}).routes()
	for pattern := range routeRoles {
		if pattern == "" || pattern == "/" || pattern == "GET /metrics" {
			continue
		}
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{name}", "x", "{snap}", "s", "{bitmap}", "b", "{id}", "1").Replace(path)
		req := httptest.NewRequest(method, path, nil)
		if _, got := mux.Handler(req); got != pattern {
			t.Errorf("policy entry %q: the request %s %s reaches %q", pattern, method, path, got)
		}
	}
	if got, want := routeRole("POST /v1/something-new"), RoleAdmin; got != want {
		t.Errorf("a route without an entry needs %v, want %v", got, want)
	}
}

func TestClientRefusesUnsafe(t *testing.T) {
	if _, err := NewClientWith("tcp:127.0.0.1:1", ClientOptions{Token: "t"}); err == nil || !strings.Contains(err.Error(), "--api-ca") {
		t.Errorf("tcp without a CA: %v, want an error naming --api-ca", err)
	}
	if _, err := NewClientWith("http://192.0.2.1:80", ClientOptions{Token: "t"}); err == nil {
		t.Error("a token over plain http to another host was accepted")
	}
	if _, err := NewClientWith("https://127.0.0.1:1", ClientOptions{CAPEM: []byte("junk")}); err == nil {
		t.Error("a CA file without a certificate was accepted")
	}
}

func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ServerTLS(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	for name, want := range map[string]os.FileMode{CACertFile: 0o644, caKeyFile: 0o600, serverCertFile: 0o644, serverKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %o", name, fi.Mode(), err, want)
		}
	}
	// The same names: the same certificate. Another name: a new one from
	// the same CA.
	cfg2, err := ServerTLS(dir, []string{"127.0.0.1"})
	if err != nil || !bytes.Equal(cfg2.Certificates[0].Certificate[0], cfg.Certificates[0].Certificate[0]) {
		t.Errorf("reload re-issued the certificate (%v)", err)
	}
	cfg3, err := ServerTLS(dir, []string{"127.0.0.1", "api.example"})
	if err != nil || bytes.Equal(cfg3.Certificates[0].Certificate[0], cfg.Certificates[0].Certificate[0]) {
		t.Fatalf("a new name did not re-issue the certificate (%v)", err)
	}
	if ca2, _ := os.ReadFile(filepath.Join(dir, CACertFile)); !bytes.Equal(ca1, ca2) {
		t.Error("re-issuing the server certificate changed the CA")
	}

	// A TLS 1.2 client and a client trusting another CA are refused.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg3)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	good, _ := ClientTLS(ca1)
	dial := func(cfg *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{}, "tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(good); err != nil {
		t.Errorf("client trusting the CA: %v", err)
	}
	old := good.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if err := dial(old); err == nil {
		t.Error("a TLS 1.2 client was accepted")
	}
	otherDir := t.TempDir()
	if _, err := ServerTLS(otherDir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	otherPEM, err := os.ReadFile(filepath.Join(otherDir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	otherCfg, _ := ClientTLS(otherPEM)
	if err := dial(otherCfg); err == nil {
		t.Error("a client trusting another CA was accepted")
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
