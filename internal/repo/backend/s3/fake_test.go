package s3

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// fakeS3 answers every listing with an empty bucket and every other
// request with an S3 error of the given status and code, the way a full
// or misbehaving server does.
func fakeS3(status int, code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		if r.Method == http.MethodGet {
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>`)
			return
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>fake answer</Message></Error>`, code)
	})
}

// A private CA given by CACertFile is trusted; without it the server's
// certificate is refused.
func TestCACertFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(fakeS3(http.StatusForbidden, "AccessDenied"))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Endpoint: srv.URL, Bucket: "tls-bucket", AccessKey: "k", SecretKey: "s", Region: "us-east-1", MaxRetries: 1}

	_, err := Open(t.Context(), cfg)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) {
		t.Errorf("Open without the CA: %v, want an unknown-authority error", err)
	}

	cfg.CACertFile = caFile
	b := openTest(t, cfg)
	if err := b.Put(t.Context(), "config", []byte("x")); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("Put over TLS: %v, want the fake server's AccessDenied", err)
	}

	cfg.CACertFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := Open(t.Context(), cfg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with a missing CA file: %v, want ErrNotExist", err)
	}
	notPEM := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.CACertFile = notPEM
	if _, err := Open(t.Context(), cfg); !errors.Is(err, ErrBadConfig) {
		t.Errorf("Open with a CA file without PEM: %v, want ErrBadConfig", err)
	}
}
