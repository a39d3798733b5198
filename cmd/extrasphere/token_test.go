package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/api"
	"github.com/extrasphere/extrasphere/internal/engine"
)

func TestTokenCommands(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	eng, err := engine.Open(ctx, engine.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	tokens, err := api.OpenTokens(filepath.Join(dir, "api"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(eng, api.Options{Access: api.Access{Local: true}, Tokens: tokens}))
	t.Cleanup(srv.Close)

	code, out, stderr := runCLI(t, ctx, "token", "create", "laptop", "--role", "operator", "--api", srv.URL)
	if code != 0 || !strings.Contains(out, "shown this once") || !strings.Contains(out, "es1_") {
		t.Fatalf("create: %d %q %q", code, out, stderr)
	}
	var nt api.NewToken
	code, out, _ = runCLI(t, ctx, "token", "create", "prom", "--role", "metrics", "--json", "--api", srv.URL)
	if code != 0 || json.Unmarshal([]byte(out), &nt) != nil || nt.Role != api.RoleMetrics || !strings.HasPrefix(nt.Secret, "es1_") {
		t.Fatalf("create --json: %d %q", code, out)
	}
	if got, ok := tokens.Authenticate(nt.Secret); !ok || got.Name != "prom" {
		t.Errorf("the printed token does not authenticate: %+v %v", got, ok)
	}
	for _, bad := range [][]string{{"token", "create", "x"}, {"token", "create", "x", "--role", "root"}} {
		if code, _, stderr := runCLI(t, ctx, append(bad, "--api", srv.URL)...); code != exitUsage || !strings.Contains(stderr, "admin, operator, read or metrics") {
			t.Errorf("%v: %d %q, want a usage error naming the roles", bad, code, stderr)
		}
	}
	if code, _, stderr := runCLI(t, ctx, "token", "create", "laptop", "--role", "read", "--api", srv.URL); code != exitError || !strings.Contains(stderr, "token rm laptop") {
		t.Errorf("create twice: %d %q", code, stderr)
	}

	code, out, _ = runCLI(t, ctx, "token", "list", "--api", srv.URL)
	if code != 0 || !strings.Contains(out, "laptop") || !strings.Contains(out, "operator") || strings.Contains(out, "es1_") {
		t.Errorf("list: %d %q", code, out)
	}
	var list []api.Token
	code, out, _ = runCLI(t, ctx, "token", "list", "--json", "--api", srv.URL)
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Name != "laptop" || strings.Contains(out, "es1_") {
		t.Errorf("list --json: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, ctx, "token", "rm", "prom", "--api", srv.URL); code != 0 || !strings.Contains(out, "removed token prom") {
		t.Errorf("rm: %d %q", code, out)
	}
	if _, ok := tokens.Authenticate(nt.Secret); ok {
		t.Error("a removed token still authenticates")
	}
	if code, _, stderr := runCLI(t, ctx, "token", "rm", "prom", "--api", srv.URL); code != exitError || !strings.Contains(stderr, "no such token") {
		t.Errorf("rm twice: %d %q", code, stderr)
	}
}

func TestAPICertNames(t *testing.T) {
	for _, tc := range []struct {
		host string
		want []string
	}{
		{"127.0.0.1", []string{"127.0.0.1", "localhost", "::1"}},
		{"192.0.2.7", []string{"192.0.2.7"}},
		{"api.example", []string{"api.example", "extra.example"}},
	} {
		got := apiCertNames(tc.host, []string{"extra.example"})
		for _, w := range tc.want {
			if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
				t.Errorf("apiCertNames(%q) = %v, want %s in it", tc.host, got, w)
			}
		}
	}
	got := apiCertNames("0.0.0.0", nil)
	if !strings.Contains(strings.Join(got, " "), "127.0.0.1") || !strings.Contains(strings.Join(got, " "), "localhost") {
		t.Errorf("apiCertNames(0.0.0.0) = %v, want every local address and localhost", got)
	}
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 1)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(ln.sem), 1; got != want {
		t.Fatalf("%d slots taken, want %d", got, want)
	}
	// The second waits for the first to close, however often Close runs.
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	first.Close()
	first.Close()
	if err := <-got; err != nil {
		t.Fatalf("second accept: %v", err)
	}
	// A closed listener ends a waiting Accept.
	dial()
	third, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	go func() {
		_, err := ln.Accept()
		got <- err
	}()
	ln.Close()
	if err := <-got; !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close: %v, want net.ErrClosed", err)
	}
}
