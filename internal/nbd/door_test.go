package nbd

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// doorExports serves "d" to anyone admitted and refuses "secret" with
// ErrNotPermitted.
type doorExports struct{ peerExports }

func (e *doorExports) OpenExport(ctx context.Context, name string) (*Export, func(), error) {
	if name == "secret" {
		return nil, nil, fmt.Errorf("volume secret is not granted to this client: %w", ErrNotPermitted)
	}
	return e.peerExports.OpenExport(ctx, name)
}

const (
	doorHint   = "connect with nbds:// and a client certificate"
	noCertText = "no client certificate: ask the admin for one"
)

// startDoorServer serves doorExports with TLS required on TCP only and
// Authorize refusing TLS clients without a certificate.
func startDoorServer(t *testing.T) *peerFixture {
	t.Helper()
	f := &peerFixture{srvCert: selfSigned(t, "server"), clientCert: selfSigned(t, "client")}
	f.dev = &ctxDevice{Device: memdev.New(1<<20, false)}
	exp := &doorExports{peerExports{dev: f.dev}}
	f.exp = &exp.peerExports
	door := Door{
		TLSRequired: func(nc net.Conn) bool { return nc.LocalAddr().Network() == "tcp" },
		TLSHint:     doorHint,
		Authorize: func(ctx context.Context) error {
			if cs, ok := PeerTLS(ctx); ok && len(cs.PeerCertificates) == 0 {
				return errors.New(noCertText)
			}
			return nil
		},
	}
	srv := NewServer(exp, Options{Door: door, TLS: &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{f.srvCert},
		ClientAuth:   tls.RequestClientCert,
	}})
	f.sock, f.tcp = serveBoth(t, srv)
	return f
}

func TestDoor(t *testing.T) {
	f := startDoorServer(t)
	noCert := f.clientTLS()
	noCert.Certificates = nil
	tests := []struct {
		name     string
		target   Target
		tls      *tls.Config
		wantType uint32 // 0: the client gets in
		wantMsg  string
	}{
		{"PlainTCPRefused", Target{Network: "tcp", Address: f.tcp, Export: "d"}, nil, repErrTLSReqd, doorHint},
		{"UnixPlainAdmitted", Target{Network: "unix", Address: f.sock, Export: "d"}, nil, 0, ""},
		{"TLSWithoutCertificate", Target{Network: "tcp", Address: f.tcp, Export: "d", TLS: true}, noCert, repErrPolicy, noCertText},
		{"TLSWithCertificate", Target{Network: "tcp", Address: f.tcp, Export: "d", TLS: true}, f.clientTLS(), 0, ""},
		{"NotPermitted", Target{Network: "tcp", Address: f.tcp, Export: "secret", TLS: true}, f.clientTLS(), repErrPolicy, "not granted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(t.Context(), tc.target, ClientOptions{TLS: tc.tls})
			if tc.wantType == 0 {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
				return
			}
			var re *ReplyError
			if !errors.As(err, &re) {
				t.Fatalf("Dial: %v, want a ReplyError", err)
			}
			if re.Type != tc.wantType || !strings.Contains(re.Msg, tc.wantMsg) {
				t.Fatalf("refusal %#x %q, want %#x containing %q", re.Type, re.Msg, tc.wantType, tc.wantMsg)
			}
			// The client sees a policy refusal as ErrNotPermitted, by its
			// reply code.
			if got, want := errors.Is(err, ErrNotPermitted), tc.wantType == repErrPolicy; got != want {
				t.Errorf("errors.Is(%v, ErrNotPermitted) = %v, want %v", err, got, want)
			}
		})
	}
}

func TestRefusalLogOncePerMinute(t *testing.T) {
	r := newRefusalLog()
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		host string
		at   time.Duration
		want bool
	}{
		{"192.0.2.1", 0, true},
		{"192.0.2.1", 30 * time.Second, false},
		{"192.0.2.2", 30 * time.Second, true},
		{"192.0.2.1", refusalLogEvery, true},
		{"192.0.2.1", refusalLogEvery + time.Second, false},
	}
	for i, s := range steps {
		if got, _ := r.allow(s.host, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: allow(%s, +%v) = %v, want %v", i, s.host, s.at, got, s.want)
		}
	}
}

func TestRefusalLogBounded(t *testing.T) {
	r := newRefusalLog()
	now := time.Unix(1_700_000_000, 0)
	for i := range maxRefusalPeers + 10 {
		r.allow(fmt.Sprintf("h%d", i), now)
	}
	if got := len(r.last); got > maxRefusalPeers {
		t.Fatalf("%d addresses remembered, want at most %d", got, maxRefusalPeers)
	}
	// Once the entries expire, new addresses are logged again.
	if ok, _ := r.allow("late", now.Add(refusalLogEvery)); !ok {
		t.Fatal("a new address after expiry was not logged")
	}
}

// dialRawTCP is dialRaw on the door server's TCP listener, with the
// client flags sent.
func dialRawTCP(t *testing.T, addr string) *rawConn {
	t.Helper()
	r := nbdraw.Dial(t, "tcp", addr)
	r.ClientFlags(cflagFixedNew | cflagNoZeroes)
	return r
}

// Before STARTTLS on a port that requires it, every option but STARTTLS and
// ABORT gets NBD_REP_ERR_TLS_REQD with the hint, and the connection stays
// in step; NBD_OPT_EXPORT_NAME, which has no error reply, closes it.
func TestDoorRawBeforeTLS(t *testing.T) {
	f := startDoorServer(t)
	r := dialRawTCP(t, f.tcp)
	metaReq := append(binary.BigEndian.AppendUint32(nil, 1), 'd') // export "d"
	metaReq = binary.BigEndian.AppendUint32(metaReq, 0)           // no queries
	for _, o := range []struct {
		opt  uint32
		data []byte
	}{
		{optList, nil},
		{optInfo, nbdraw.GoPayload("d")},
		{optGo, nbdraw.GoPayload("d")},
		{optStructuredReply, nil},
		{optListMetaContext, metaReq},
		{99, nil}, // unknown: still TLS first
	} {
		r.Option(o.opt, o.data)
		typ, msg := r.OptReply(o.opt)
		if typ != repErrTLSReqd || !strings.Contains(string(msg), doorHint) {
			t.Fatalf("option %d before TLS: reply %#x %q, want NBD_REP_ERR_TLS_REQD with the hint", o.opt, typ, msg)
		}
	}
	r.Option(optExportName, []byte("d"))
	if !r.ClosedSilently() {
		t.Fatal("NBD_OPT_EXPORT_NAME before TLS did not close the connection")
	}
}
