package nbd

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/memdev"
)

// benchClient serves a 64 MiB memdev on a unix socket and dials it with
// our client: the server's per-request cost (decode, budget, worker,
// reply) at queue depth 1, the latency path.
func benchClient(b *testing.B) *Client {
	b.Helper()
	exp := &testExports{devs: map[string]*Export{"disk": {Name: "disk", Device: memdev.New(64<<20, false)}}}
	srv := NewServer(exp, Options{})
	sock := filepath.Join(b.TempDir(), "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	c, err := Dial(b.Context(), Target{Network: "unix", Address: sock, Export: "disk"}, ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkServerRead4KQD1(b *testing.B) {
	c := benchClient(b)
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := c.ReadAt(b.Context(), buf, int64(i%4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServerWrite4KQD1(b *testing.B) {
	c := benchClient(b)
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := c.WriteAt(b.Context(), buf, int64(i%4096)*4096, 0); err != nil {
			b.Fatal(err)
		}
	}
}
