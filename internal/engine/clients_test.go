package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/pki"
)

// tlsFixture is an engine with a client CA served over NBD on TCP with
// TLS required, as serve does.
type tlsFixture struct {
	e    *Engine
	ca   *pki.CA
	addr string
}

func startTLSEngine(t *testing.T) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(dir, "pki"), "test")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.Context(), Config{DataDir: dir, NBDSocket: filepath.Join(dir, "nbd.sock"), NBDAddr: "127.0.0.1:10809", ClientCA: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cert, err := ca.IssueServer(pki.ServerNames([]string{"127.0.0.1:0"}))
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(e, nbd.Options{TLS: ca.ServerConfig(cert), RequireTLS: true, Door: nbd.Door{Authorize: e.AuthorizeNBD}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	mustCreate(t, e, CreateOptions{Name: "a", Size: 1 << 20})
	mustCreate(t, e, CreateOptions{Name: "b", Size: 1 << 20})
	return &tlsFixture{e: e, ca: ca, addr: ln.Addr().String()}
}

// client adds an NBD client and returns its TLS configuration.
func (f *tlsFixture) client(t *testing.T, name string, ro bool, vols ...string) *tls.Config {
	t.Helper()
	keyPEM, pubPEM, err := pki.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	cr, err := f.e.AddClient(t.Context(), apischema.ClientRequest{Name: name, Volumes: vols, ReadOnly: ro, PublicKey: string(pubPEM)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair([]byte(cr.CertPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(cr.CAPEM))
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{c}}
}

func (f *tlsFixture) dial(t *testing.T, export string, cfg *tls.Config) (*nbd.Client, error) {
	return nbd.Dial(t.Context(), nbd.Target{Network: "tcp", Address: f.addr, Export: export, TLS: true}, nbd.ClientOptions{TLS: cfg})
}

func TestNBDClientAuthorization(t *testing.T) {
	f := startTLSEngine(t)
	rw := f.client(t, "rw", false, "a")
	ro := f.client(t, "ro", true, "a", "b")
	anon := rw.Clone()
	anon.Certificates = nil
	// A certificate of another CA, sent although the server's request
	// names ours (GnuTLS clients do send it).
	other, err := pki.Open(filepath.Join(t.TempDir(), "other"), "other")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, pubPEM, err := pki.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	is, err := other.IssueClient("rw", pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := tls.X509KeyPair(is.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	foreign := anon.Clone()
	foreign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &fc, nil }

	tests := []struct {
		name     string
		export   string
		cfg      *tls.Config
		wantMsg  string // "" admitted
		readOnly bool
	}{
		{"GrantedVolume", "a", rw, "", false},
		{"OtherVolume", "b", rw, "may not open volume \"b\"", false},
		{"UnknownVolume", "nope", rw, "may not open volume \"nope\"", false},
		{"ReadOnlyClient", "b", ro, "", true},
		{"NoCertificate", "a", anon, "extrasphere client add", false},
		{"OtherCA", "a", foreign, "not issued by this node", false},
		{"ReplicaName", "a@gen", rw, "paired node", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.dial(t, tc.export, tc.cfg)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				if got := c.Caps().ReadOnly; got != tc.readOnly {
					t.Fatalf("read-only %v, want %v", got, tc.readOnly)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("admitted, want refused")
			}
			var re *nbd.ReplyError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, tc.wantMsg) {
				t.Fatalf("refusal %v, want a reply containing %q", err, tc.wantMsg)
			}
		})
	}

	t.Run("Revoked", func(t *testing.T) {
		if err := f.e.RemoveClient(t.Context(), "rw"); err != nil {
			t.Fatal(err)
		}
		_, err := f.dial(t, "a", rw)
		var re *nbd.ReplyError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, "revoked") {
			t.Fatalf("revoked client: %v, want a refusal saying revoked", err)
		}
	})
}

func TestAddClientErrors(t *testing.T) {
	f := startTLSEngine(t)
	_, pub, err := pki.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	f.client(t, "c1", false, "a")
	tests := []struct {
		name string
		req  apischema.ClientRequest
		want error
	}{
		{"Exists", apischema.ClientRequest{Name: "c1", Volumes: []string{"a"}, PublicKey: string(pub)}, ErrClientExists},
		{"UnknownVolume", apischema.ClientRequest{Name: "c2", Volumes: []string{"nope"}, PublicKey: string(pub)}, errkind.ErrVolumeNotFound},
		{"NoVolumes", apischema.ClientRequest{Name: "c2", PublicKey: string(pub)}, errkind.ErrInvalidArgument},
		{"BadName", apischema.ClientRequest{Name: "a/b", Volumes: []string{"a"}, PublicKey: string(pub)}, errkind.ErrInvalidArgument},
		{"BadKey", apischema.ClientRequest{Name: "c2", Volumes: []string{"a"}, PublicKey: "junk"}, errkind.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.e.AddClient(t.Context(), tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("AddClient: %v, want %v", err, tc.want)
			}
		})
	}
	if err := f.e.RemoveClient(t.Context(), "nope"); !errors.Is(err, ErrClientNotFound) {
		t.Fatalf("RemoveClient unknown: %v, want ErrClientNotFound", err)
	}
	cs, err := f.e.Clients(t.Context())
	if err != nil || len(cs) != 1 || cs[0].Name != "c1" {
		t.Fatalf("Clients = %+v, %v", cs, err)
	}
}

func TestAttachTLS(t *testing.T) {
	f := startTLSEngine(t)
	q, err := f.e.AttachTLS(t.Context(), "a", apischema.AttachQEMU, true, "/etc/certs")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(q, "\n", 2)[0]
	for _, want := range []string{"-object 'tls-creds-x509,id=es-tls,dir=/etc/certs,endpoint=client'", `"tls-creds":"es-tls"`, `"host":"127.0.0.1"`} {
		if !strings.Contains(first, want) {
			t.Errorf("qemu TLS line lacks %s:\n%s", want, first)
		}
	}
	if !strings.Contains(q, ",tls-creds=es-tls,") {
		t.Errorf("the -drive alternative lacks tls-creds:\n%s", q)
	}
	x, err := f.e.AttachTLS(t.Context(), "a", apischema.AttachLibvirt, true, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<source protocol='nbd' name='a' tls='yes'>", apischema.DefaultTLSDir, "nbd_tls_x509_cert_dir"} {
		if !strings.Contains(x, want) {
			t.Errorf("libvirt TLS xml lacks %s:\n%s", want, x)
		}
	}
	if u := f.e.TCPURI("a"); !strings.HasPrefix(u, "nbds://") {
		t.Errorf("TCPURI %s, want nbds://", u)
	}
}
