package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestOpenCreatesOnceAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := Open(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.Fingerprint(), ca.Fingerprint(); got != want {
		t.Fatalf("reopened CA %s, want the same CA %s", got, want)
	}
	for name, want := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", name, got, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != dirMode {
		t.Errorf("directory mode %v (%v), want %o", fi.Mode().Perm(), err, dirMode)
	}
}

func TestOpenDamaged(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, "n1"); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with a damaged key: %v, want ErrDamaged", err)
	}
	// A key of another CA does not match the certificate.
	other := t.TempDir()
	if _, err := Open(other, "n2"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
	os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600)
	if _, err := Open(dir, "n1"); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with another CA's key: %v, want ErrDamaged", err)
	}
}

func TestIssueClientBadKey(t *testing.T) {
	ca, err := Open(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not pem"} {
		if _, err := ca.IssueClient("c", []byte(in)); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("IssueClient(%q): %v, want ErrBadPublicKey", in, err)
		}
	}
}

func TestServerNames(t *testing.T) {
	got := ServerNames([]string{"192.0.2.7:10809", "bad"})
	for _, want := range []string{"192.0.2.7", "localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(got, want) {
			t.Errorf("ServerNames = %v, missing %s", got, want)
		}
	}
	if any := ServerNames([]string{"0.0.0.0:10809"}); !slices.Contains(any, "127.0.0.1") || len(any) < 3 {
		t.Errorf("ServerNames(0.0.0.0) = %v", any)
	}
}

// client makes a client certificate of ca for TLS.
func client(t *testing.T, ca *CA, name string) (tls.Certificate, Issued) {
	t.Helper()
	keyPEM, pubPEM, err := NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.IssueClient(name, pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, is
}

// handshake runs a TLS handshake over a pipe and returns the server's
// view and both errors.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sc := tls.Server(a, srv)
	cc := tls.Client(b, cli)
	cerr := make(chan error, 1)
	go func() {
		err := cc.HandshakeContext(t.Context())
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives after the client's handshake; a read sees it.
			cc.Write([]byte{1})
			_, err = cc.Read(make([]byte, 1))
		}
		cerr <- err
		cc.Close()
	}()
	serr := sc.HandshakeContext(t.Context())
	if serr == nil {
		buf := make([]byte, 1)
		sc.Read(buf)
		sc.Write(buf)
	}
	sc.Close()
	return sc.ConnectionState(), serr, <-cerr
}

func TestTLSClientAuth(t *testing.T) {
	ca, err := Open(t.TempDir(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.TempDir(), "n2")
	if err != nil {
		t.Fatal(err)
	}
	scert, err := ca.IssueServer([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(ca.Dir(), ServerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("server key file: %v %v", fi, err)
	}
	srv := ca.ServerConfig(scert)
	good, is := client(t, ca, "qemu1")
	foreign, _ := client(t, other, "qemu1")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())

	tests := []struct {
		name       string
		certs      []tls.Certificate
		serverName string
		roots      *x509.CertPool
		wantOK     bool  // both sides complete the handshake
		wantVerify bool  // VerifyClient accepts the client
		wantErr    error // else VerifyClient's error
	}{
		{"OurClient", []tls.Certificate{good}, "127.0.0.1", pool, true, true, nil},
		{"ByName", []tls.Certificate{good}, "localhost", pool, true, true, nil},
		{"NoCertificate", nil, "127.0.0.1", pool, true, false, ErrNoClientCertificate},
		// Go's client does not even send a certificate the server's CA
		// list does not name: the connection is one without a certificate.
		{"OtherCA", []tls.Certificate{foreign}, "127.0.0.1", pool, true, false, ErrNoClientCertificate},
		{"WrongServerName", []tls.Certificate{good}, "192.0.2.1", pool, false, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, serr, cerr := handshake(t, srv, &tls.Config{Certificates: tc.certs, ServerName: tc.serverName, RootCAs: tc.roots})
			if ok := serr == nil && cerr == nil; ok != tc.wantOK {
				t.Fatalf("handshake ok=%v (server %v, client %v), want %v", ok, serr, cerr, tc.wantOK)
			}
			if !tc.wantOK {
				return
			}
			fp, name, err := ca.VerifyClient(&cs, time.Now())
			if ok := err == nil; ok != tc.wantVerify {
				t.Fatalf("VerifyClient: %v, want ok=%v", err, tc.wantVerify)
			}
			if err == nil && (fp != is.Fingerprint || name != "qemu1") {
				t.Errorf("VerifyClient = %s %s, want %s qemu1", fp, name, is.Fingerprint)
			}
			if !tc.wantVerify && !errors.Is(err, tc.wantErr) {
				t.Errorf("VerifyClient: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// A client that sends a certificate of another CA anyway (GnuTLS does)
// completes the handshake, and VerifyClient refuses it.
func TestTLSForeignCertificateSent(t *testing.T) {
	ca, err := Open(t.TempDir(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.TempDir(), "n2")
	if err != nil {
		t.Fatal(err)
	}
	scert, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := client(t, other, "intruder")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	cli := &tls.Config{ServerName: "127.0.0.1", RootCAs: pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }}
	cs, serr, cerr := handshake(t, ca.ServerConfig(scert), cli)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if _, _, err := ca.VerifyClient(&cs, time.Now()); !errors.Is(err, ErrNotOurCertificate) {
		t.Fatalf("VerifyClient of another CA's certificate: %v, want ErrNotOurCertificate", err)
	}
	// Ours, but expired: refused the same way.
	good, _ := client(t, ca, "qemu1")
	cli.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &good, nil }
	cs, _, _ = handshake(t, ca.ServerConfig(scert), cli)
	if _, _, err := ca.VerifyClient(&cs, time.Now()); err != nil {
		t.Fatalf("VerifyClient of our certificate: %v", err)
	}
	if _, _, err := ca.VerifyClient(&cs, time.Now().Add(leafValidity+time.Hour)); !errors.Is(err, ErrNotOurCertificate) {
		t.Fatalf("VerifyClient of an expired certificate: %v, want ErrNotOurCertificate", err)
	}
}
