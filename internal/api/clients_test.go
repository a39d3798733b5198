package api

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/pki"
)

func TestClientRoutes(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(dir, "pki"), "test")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(t.Context(), engine.Config{DataDir: dir, NBDAddr: "127.0.0.1:10809", ClientCA: ca})
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
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "v", Size: 4096}); err != nil {
		t.Fatal(err)
	}
	if cs, err := c.Clients(ctx); err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("Clients on a new daemon = %#v, %v; want an empty list", cs, err)
	}
	_, pub, err := pki.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.AddClient(ctx, apischema.ClientRequest{Name: "q", Volumes: []string{"v"}, ReadOnly: true, PublicKey: string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	if cr.CertPEM == "" || cr.CAPEM != string(ca.CertPEM()) || !cr.Client.ReadOnly || cr.Client.Fingerprint == "" {
		t.Fatalf("AddClient = %+v", cr)
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"Exists", func() error {
			_, err := c.AddClient(ctx, apischema.ClientRequest{Name: "q", Volumes: []string{"v"}, PublicKey: string(pub)})
			return err
		}, 409, apischema.CodeClientExists},
		{"UnknownVolume", func() error {
			_, err := c.AddClient(ctx, apischema.ClientRequest{Name: "r", Volumes: []string{"nope"}, PublicKey: string(pub)})
			return err
		}, 404, apischema.CodeVolumeNotFound},
		{"BadKey", func() error {
			_, err := c.AddClient(ctx, apischema.ClientRequest{Name: "r", Volumes: []string{"v"}, PublicKey: "x"})
			return err
		}, 400, apischema.CodeInvalidArgument},
		{"RemoveUnknown", func() error { return c.RemoveClient(ctx, "nope") }, 404, apischema.CodeClientNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, code := apiCode(t, tc.call())
			if st != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", st, code, tc.status, tc.code)
			}
		})
	}
	if err := c.RemoveClient(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if cs, err := c.Clients(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Clients after rm = %+v, %v", cs, err)
	}
}

func TestClientRoutesWithoutCA(t *testing.T) {
	_, c, _ := newTestAPI(t)
	_, err := c.AddClient(context.Background(), apischema.ClientRequest{Name: "q", Volumes: []string{"v"}, PublicKey: "x"})
	if st, code := apiCode(t, err); st != 501 || code != apischema.CodeNoClientCA {
		t.Fatalf("got %d %s, want 501 %s", st, code, apischema.CodeNoClientCA)
	}
}
