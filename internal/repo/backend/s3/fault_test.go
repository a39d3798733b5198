package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3/s3test"
)

// The server dies in the middle of a sequence of Puts: the Put in flight
// fails (no panic, no hang), and after a restart every acknowledged object
// is intact and the same backend works again.
func TestServerKilledMidPuts(t *testing.T) {
	t.Parallel() // mostly waits; its own server
	srv := s3test.Start(t)
	b := openTest(t, testConfig(srv, srv.NewBucket(t), "repo"))
	// Guard against a hang; the failure itself comes from minio-go giving up.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 64<<10+i) }
	acked := 0
	var putErr error
	for i := 0; i < 1000 && putErr == nil; i++ {
		if i == 20 {
			srv.Kill()
		}
		putErr = b.Put(ctx, fmt.Sprintf("chunks/%04d", i), payload(i))
		if putErr == nil {
			acked++
		}
	}
	if putErr == nil {
		t.Fatal("every Put succeeded with the server killed")
	}
	if acked < 20 {
		t.Fatalf("only %d Puts acknowledged before the kill, want 20", acked)
	}
	if !strings.Contains(putErr.Error(), "s3://") || !strings.Contains(putErr.Error(), srv.Endpoint) {
		t.Errorf("Put error %q does not name the location and endpoint", putErr)
	}
	t.Logf("Put with the server dead: %v", putErr)
	// Get fails the same way; a short deadline saves the retries' wait.
	getCtx, getCancel := context.WithTimeout(ctx, time.Second)
	defer getCancel()
	if _, err := b.Get(getCtx, "chunks/0000"); err == nil {
		t.Error("Get succeeded with the server dead")
	}

	srv.Restart(t)
	for i := range acked {
		got, err := b.Get(ctx, fmt.Sprintf("chunks/%04d", i))
		if err != nil {
			t.Fatalf("Get acknowledged object %d after restart: %v", i, err)
		}
		if !bytes.Equal(got, payload(i)) {
			t.Fatalf("acknowledged object %d differs after restart", i)
		}
	}
	if err := b.Put(ctx, "chunks/after", []byte("after restart")); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if got, err := b.Get(ctx, "chunks/after"); err != nil || string(got) != "after restart" {
		t.Fatalf("Get after restart = %q, %v", got, err)
	}
	// The failed Put left either nothing or a whole object.
	keys := listAll(t, b, "chunks/")
	for i := acked; i < 1000; i++ {
		key := fmt.Sprintf("chunks/%04d", i)
		size, ok := keys[key]
		if ok && size != int64(len(payload(i))) {
			t.Errorf("interrupted Put left %s with %d bytes, want none or %d", key, size, len(payload(i)))
		}
	}
}

// A server that accepts connections but never answers: Config.Timeout
// makes the call fail instead of hanging.
func TestStalledServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, never answer
		}
	}()
	cfg := Config{Endpoint: "http://" + ln.Addr().String(), Bucket: "stalled", AccessKey: "k", SecretKey: "s",
		Region: "us-east-1", Timeout: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = Open(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open against a stalled server: %v, want a deadline error", err)
	}
	t.Logf("Open against a stalled server: %v", err)

	// The same for every operation of a backend whose server stalls
	// after Open (List has its own progress watchdog).
	b, err := newBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ops := map[string]func() error{
		"Put":    func() error { return b.Put(ctx, "config", []byte("x")) },
		"Get":    func() error { _, err := b.Get(ctx, "config"); return err },
		"Size":   func() error { _, err := b.Size(ctx, "config"); return err },
		"Delete": func() error { return b.Delete(ctx, "config") },
		"List":   func() error { return b.List(ctx, "", func(string, int64) error { return nil }) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a stalled server: %v, want a deadline error", name, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the test's own guard deadline fired: Config.Timeout did not bound the calls")
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	cfg := testConfig(srv, "no-such-bucket", "repo")
	for _, region := range []string{"", "us-east-1"} {
		cfg.Region = region
		_, err := Open(t.Context(), cfg)
		if !errors.Is(err, ErrNoBucket) {
			t.Fatalf("Open with a missing bucket (region %q): %v, want ErrNoBucket", region, err)
		}
		for _, want := range []string{`"no-such-bucket"`, srv.Endpoint, "create it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
		t.Logf("Open with a missing bucket: %v", err)
	}

	// CreateBucket makes it (twice is fine), then Open works.
	for range 2 {
		if err := CreateBucket(t.Context(), cfg); err != nil {
			t.Fatalf("CreateBucket: %v", err)
		}
	}
	b := openTest(t, cfg)
	if err := b.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatalf("Put in the created bucket: %v", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	// With no region the client first asks the bucket's location; with one
	// it goes straight to the listing. Both must report the keys.
	tests := []struct{ name, ak, sk, region string }{
		{"WrongSecret", srv.AccessKey, "not-the-secret", ""},
		{"UnknownAccessKey", "nobody", srv.SecretKey, ""},
		{"WrongSecretWithRegion", srv.AccessKey, "not-the-secret", "us-east-1"},
		{"UnknownAccessKeyWithRegion", "nobody", srv.SecretKey, "us-east-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(srv, bucket, "")
			cfg.AccessKey, cfg.SecretKey, cfg.Region = tt.ak, tt.sk, tt.region
			_, err := Open(t.Context(), cfg)
			if !errors.Is(err, ErrAccessDenied) {
				t.Fatalf("Open with wrong credentials: %v, want ErrAccessDenied", err)
			}
			if !strings.Contains(err.Error(), "check the access key") {
				t.Errorf("error %q gives no hint about the keys", err)
			}
			t.Logf("Open with wrong credentials: %v", err)
			if err := CreateBucket(t.Context(), cfg); !errors.Is(err, ErrAccessDenied) {
				t.Errorf("CreateBucket with wrong credentials: %v, want ErrAccessDenied", err)
			}
		})
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	srv := s3test.Start(t)
	cfg := testConfig(srv, srv.NewBucket(t), "")
	cfg.AccessKey, cfg.SecretKey = "", ""

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := Open(t.Context(), cfg); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("Open without credentials: %v, want ErrNoCredentials", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	b := openTest(t, cfg)
	if err := b.Put(t.Context(), "config", []byte("env")); err != nil {
		t.Fatalf("Put with credentials from the environment: %v", err)
	}
}

// Quota and out-of-space answers map to backend.ErrNoSpace. A fake server
// gives them, as versitygw (InsufficientStorage, QuotaExceeded), MinIO and
// Ceph RGW do when full.
func TestNoSpace(t *testing.T) {
	tests := []struct {
		code   string
		status int
	}{
		{"InsufficientStorage", http.StatusInsufficientStorage},
		{"QuotaExceeded", http.StatusForbidden},
		{"XMinioStorageFull", http.StatusInsufficientStorage},
		{"SomethingNew", http.StatusInsufficientStorage},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			srv := httptest.NewServer(fakeS3(tt.status, tt.code))
			defer srv.Close()
			cfg := Config{Endpoint: srv.URL, Bucket: "full", Prefix: "r", AccessKey: "k", SecretKey: "s", Region: "us-east-1"}
			b := openTest(t, cfg)
			err := b.Put(t.Context(), "chunks/aa", []byte("data"))
			if !errors.Is(err, backend.ErrNoSpace) {
				t.Fatalf("Put on a full server: %v, want ErrNoSpace", err)
			}
			if !strings.Contains(err.Error(), "s3://full/r/chunks/aa") {
				t.Errorf("error %q does not name the object", err)
			}
		})
	}
}
