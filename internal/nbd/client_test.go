package nbd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// serveOne serves dev as export "d" and returns a client for it.
func serveOne(t *testing.T, dev blockdev.Device, ro bool) *Client {
	t.Helper()
	srv := NewServer(&testExports{devs: map[string]*Export{"d": {Name: "d", Device: dev, ReadOnly: ro}}}, Options{})
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c, err := Dial(t.Context(), Target{Network: "unix", Address: sock, Export: "d"},
		ClientOptions{MetaContexts: []string{blockdev.MetaBaseAllocation}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The client is a Device: it passes the same conformance suite, through
// the server, as the leaf devices do.
func TestClientConformance(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return serveOne(t, memdev.New(size, false), false)
	}, devtest.Options{
		OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
			m := memdev.New(int64(len(content)), false)
			if err := m.WriteAt(t.Context(), content, 0, 0); err != nil {
				t.Fatal(err)
			}
			return serveOne(t, m, true)
		},
	})
}

func TestClientUnknownExport(t *testing.T) {
	s := startServer(t)
	_, err := Dial(t.Context(), Target{Network: "unix", Address: s.sock, Export: "nope"}, ClientOptions{})
	if !errors.Is(err, ErrUnknownExport) {
		t.Fatalf("got %v, want ErrUnknownExport", err)
	}
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
	}{
		{"nbd://127.0.0.1:10810/vm1", Target{"tcp", "127.0.0.1:10810", "vm1", false}},
		{"nbd://host/", Target{"tcp", "host:10809", "", false}},
		{"nbds://[::1]/x", Target{"tcp", "[::1]:10809", "x", true}},
		{"nbd+unix:///vm1-disk0?socket=/run/es/nbd.sock", Target{"unix", "/run/es/nbd.sock", "vm1-disk0", false}},
	} {
		got, err := ParseURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"http://x/y", "nbd+unix:///x", "nbd+unix://host/x?socket=/s", "::"} {
		if _, err := ParseURI(bad); !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q): %v, want ErrBadURI", bad, err)
		}
	}
}
