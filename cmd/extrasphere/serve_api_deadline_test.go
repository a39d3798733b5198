package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// A client that stops reading a response is cut off after
// apiWriteTimeout: the handler's write fails instead of blocking forever.
// A client that reads gets its responses, more than one per connection.
func TestAPIWriteDeadline(t *testing.T) {
	old := apiWriteTimeout
	apiWriteTimeout = 200 * time.Millisecond
	t.Cleanup(func() { apiWriteTimeout = old })

	writeErr := make(chan error, 1)
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		for range 256 { // 256 MiB: more than any socket buffer holds
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: writeDeadlines(mux), ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c := &http.Client{}
	for range 2 {
		resp, err := c.Get("http://" + ln.Addr().String() + "/small")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("GET /small = %q, %v", b, err)
		}
	}

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Never read: the handler must end with a deadline error.
	if err := <-writeErr; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that does not read = %v, want a deadline error", err)
	}
}
