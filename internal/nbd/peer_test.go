package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// selfSigned makes a certificate for localhost usable by a server and a
// client, as node identities are.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// peerExports serves "d"; it refuses "vm1" the way the engine refuses an
// export (a reason wrapping ErrUnknownExport), "plain" with an error that
// does not wrap it, and anything else as unknown. It records what PeerTLS
// said on every OpenExport.
type peerExports struct {
	dev blockdev.Device

	mu    sync.Mutex // guards peers
	peers []*tls.ConnectionState
}

const refusal = "volume vm1 was failed over at 2025-06-01T10:00:00Z; it no longer takes writes from this node"

func (e *peerExports) OpenExport(ctx context.Context, name string) (*Export, func(), error) {
	cs, _ := PeerTLS(ctx)
	e.mu.Lock()
	e.peers = append(e.peers, cs)
	e.mu.Unlock()
	switch name {
	case "d":
		return &Export{Name: "d", Device: e.dev}, func() {}, nil
	case "vm1":
		return nil, nil, fmt.Errorf("export %q: %s: %w", name, refusal, ErrUnknownExport)
	case "plain":
		return nil, nil, errors.New(refusal)
	default:
		return nil, nil, fmt.Errorf("export %q: %w", name, ErrUnknownExport)
	}
}

func (e *peerExports) ListExports(ctx context.Context) []string { return []string{"d"} }

func (e *peerExports) seen() []*tls.ConnectionState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*tls.ConnectionState(nil), e.peers...)
}

// ctxDevice records the ctx of the last WriteAt.
type ctxDevice struct {
	blockdev.Device

	mu  sync.Mutex // guards ctx
	ctx context.Context
}

func (d *ctxDevice) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	return d.Device.WriteAt(ctx, p, off, f)
}

func (d *ctxDevice) lastCtx() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

type peerFixture struct {
	exp        *peerExports
	dev        *ctxDevice
	tcp, sock  string
	srvCert    tls.Certificate
	clientCert tls.Certificate
}

// startPeerServer serves peerExports on TCP and a unix socket with STARTTLS
// available (not required) and client certificates requested, not verified:
// the engine pins them itself.
func startPeerServer(t *testing.T) *peerFixture {
	t.Helper()
	f := &peerFixture{srvCert: selfSigned(t, "server"), clientCert: selfSigned(t, "client")}
	f.dev = &ctxDevice{Device: memdev.New(1<<20, false)}
	f.exp = &peerExports{dev: f.dev}
	srv := NewServer(f.exp, Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{f.srvCert},
		ClientAuth:   tls.RequestClientCert,
	}})
	f.sock, f.tcp = serveBoth(t, srv)
	return f
}

func (f *peerFixture) clientTLS() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(f.srvCert.Leaf)
	return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{f.clientCert}}
}

func TestPeerTLSReachesExports(t *testing.T) {
	f := startPeerServer(t)
	target, err := ParseURI("nbds://" + f.tcp + "/d")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(t.Context(), target, ClientOptions{TLS: f.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	seen := f.exp.seen()
	if got, want := len(seen), 1; got != want {
		t.Fatalf("OpenExport calls: got %d, want %d", got, want)
	}
	cs := seen[0]
	if cs == nil || len(cs.PeerCertificates) == 0 {
		t.Fatalf("OpenExport saw no peer certificate: %+v", cs)
	}
	if got, want := cs.PeerCertificates[0].Raw, f.clientCert.Leaf.Raw; !bytes.Equal(got, want) {
		t.Errorf("peer certificate is %q, want the client's %q", cs.PeerCertificates[0].Subject, f.clientCert.Leaf.Subject)
	}

	// The device gets the same connection ctx: it carries the peer, is
	// live while the connection is, and ends when the connection ends.
	if err := c.WriteAt(t.Context(), []byte("hello"), 0, 0); err != nil {
		t.Fatal(err)
	}
	dctx := f.dev.lastCtx()
	if cs, ok := PeerTLS(dctx); !ok || !bytes.Equal(cs.PeerCertificates[0].Raw, f.clientCert.Leaf.Raw) {
		t.Errorf("device ctx lacks the peer: %v", ok)
	}
	if err := dctx.Err(); err != nil {
		t.Errorf("device ctx ended while the connection is open: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	<-dctx.Done() // returns only if closing the connection cancels it
}

func TestPeerTLSAbsentWithoutTLS(t *testing.T) {
	f := startPeerServer(t)
	for _, target := range []Target{
		{Network: "tcp", Address: f.tcp, Export: "d"},
		{Network: "unix", Address: f.sock, Export: "d"},
	} {
		c, err := Dial(t.Context(), target, ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteAt(t.Context(), []byte("x"), 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, ok := PeerTLS(f.dev.lastCtx()); ok {
			t.Errorf("%s: device ctx has a TLS peer on a clear-text connection", target.Network)
		}
		c.Close()
	}
	for i, cs := range f.exp.seen() {
		if cs != nil {
			t.Errorf("OpenExport %d saw a TLS peer on a clear-text connection", i)
		}
	}
	if _, ok := PeerTLS(context.Background()); ok {
		t.Error("PeerTLS(Background) reported a peer")
	}
}

// The engine's reason for refusing an export reaches our client's error
// (ReplyError.Msg) in an NBD_REP_ERR_UNKNOWN reply, with and without TLS,
// whether the refusal comes at NBD_OPT_GO or at NBD_OPT_SET_META_CONTEXT
// (sent first when meta contexts are asked for), and reaches QEMU too.
func TestOpenExportRefusalReachesClient(t *testing.T) {
	f := startPeerServer(t)
	wantMsg := `export "vm1": ` + refusal + ": unknown export"
	for _, tc := range []struct {
		name   string
		target Target
		opts   ClientOptions
	}{
		{"Clear", Target{Network: "unix", Address: f.sock, Export: "vm1"}, ClientOptions{}},
		{"TLS", Target{Network: "tcp", Address: f.tcp, Export: "vm1", TLS: true}, ClientOptions{TLS: f.clientTLS()}},
		{"TLSMeta", Target{Network: "tcp", Address: f.tcp, Export: "vm1", TLS: true},
			ClientOptions{TLS: f.clientTLS(), MetaContexts: []string{blockdev.MetaBaseAllocation}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(t.Context(), tc.target, tc.opts)
			var re *ReplyError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a ReplyError", err)
			}
			if got, want := re.Msg, wantMsg; got != want {
				t.Errorf("Msg: got %q, want %q", got, want)
			}
			if got, want := re.Type, repErrUnknown; got != want {
				t.Errorf("reply type: got %#x, want %#x", got, want)
			}
			if !strings.Contains(err.Error(), refusal) || !errors.Is(err, ErrUnknownExport) {
				t.Errorf("error lacks the reason or ErrUnknownExport: %v", err)
			}
		})
	}
	// An error that does not wrap ErrUnknownExport still carries its text,
	// as NBD_REP_ERR_PLATFORM (which QEMU words as "Server lacks support").
	t.Run("NotUnknown", func(t *testing.T) {
		_, err := Dial(t.Context(), Target{Network: "unix", Address: f.sock, Export: "plain"}, ClientOptions{})
		var re *ReplyError
		if !errors.As(err, &re) || re.Type != repErrPlatform || re.Msg != refusal {
			t.Fatalf("got %v, want NBD_REP_ERR_PLATFORM with %q", err, refusal)
		}
	})
	t.Run("Qemu", func(t *testing.T) {
		code, out := runStatus(t, "qemu-io", "-f", "raw", "-c", "read 0 512", "nbd+unix:///vm1?socket="+f.sock)
		if code == 0 || !strings.Contains(out, "Requested export not available") || !strings.Contains(out, refusal) {
			t.Errorf("qemu-io: exit %d, want the refusal reason:\n%s", code, out)
		}
	})
}

func TestOpenRefusalLimitsMessage(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes of 2-byte runes
	code, msg := openRefusal(fmt.Errorf("%s: %w", long, ErrUnknownExport))
	if got, want := code, repErrUnknown; got != want {
		t.Errorf("code: got %#x, want %#x", got, want)
	}
	if len(msg) > maxStringLen || !utf8.Valid(msg) || !strings.HasPrefix(long, string(msg)) || len(msg) < maxStringLen-1 {
		t.Errorf("message of %d bytes (valid UTF-8 %v), want the first <= %d bytes of the text", len(msg), utf8.Valid(msg), maxStringLen)
	}
	if _, msg := openRefusal(errors.New(refusal)); string(msg) != refusal {
		t.Errorf("short message changed: %q", msg)
	}
}
