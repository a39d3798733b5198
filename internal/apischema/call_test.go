package apischema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			var in map[string]int
			json.NewDecoder(r.Body).Decode(&in)
			json.NewEncoder(w).Encode(map[string]int{"got": in["n"]})
		case "/coded":
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(ErrorBody{Error: "no volume v", Code: CodeVolumeNotFound})
		case "/proxy":
			http.Error(w, "bad gateway from a proxy", http.StatusBadGateway)
		case "/text":
			w.Write([]byte("plain text"))
		}
	}))
	defer srv.Close()
	ctx := t.Context()
	hc := srv.Client()

	var out map[string]int
	if err := Call(ctx, hc, http.MethodPost, srv.URL+"/echo", "tok", map[string]int{"n": 7}, &out); err != nil || out["got"] != 7 {
		t.Fatalf("echo: %v, %v", out, err)
	}

	err := Call(ctx, hc, http.MethodGet, srv.URL+"/coded", "", nil, nil)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Code != CodeVolumeNotFound || ae.Message != "no volume v" {
		t.Fatalf("coded error: %#v", err)
	}

	// A reply that is not an ErrorBody (a proxy's page) is CodeInternal
	// with the status and the text.
	err = Call(ctx, hc, http.MethodGet, srv.URL+"/proxy", "", nil, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || ae.Code != CodeInternal ||
		!bytes.Contains([]byte(ae.Message), []byte("bad gateway from a proxy")) {
		t.Fatalf("proxy error: %#v", err)
	}

	var raw bytes.Buffer
	if err := Call(ctx, hc, http.MethodGet, srv.URL+"/text", "", nil, &raw); err != nil || raw.String() != "plain text" {
		t.Fatalf("raw: %q, %v", raw.String(), err)
	}
	if err := Call(ctx, hc, http.MethodGet, srv.URL+"/text", "", nil, &out); err == nil {
		t.Fatal("decoding text as JSON succeeded")
	}

	// No reply: a TransportError; after the context ended: its error.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var te *TransportError
	if err := Call(ctx, hc, http.MethodGet, dead.URL, "", nil, nil); !errors.As(err, &te) {
		t.Fatalf("closed server: %#v, want a *TransportError", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Call(cctx, hc, http.MethodGet, srv.URL+"/text", "", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
