package node

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// Peer API routes (HTTPS with ServerTLS):
//
//	POST /peer/v1/pair   PairRequest -> 200 Hello       (any client certificate; a pending code's secret authorises, once)
//	GET  /peer/v1/hello  -> 200 Hello                    (paired peers)
//	*    /peer/...       -> next, with the Peer in the context (paired peers)
//
// Errors are apischema.ErrorBody, {"error": "...", "code": "..."}, with the
// peer codes of apischema.

// maxPeerBody bounds the bodies of the pairing routes.
const maxPeerBody = 64 << 10

// PairRequest is the body of POST /peer/v1/pair.
type PairRequest struct {
	CodeSecret string `json:"code_secret"` // the secret part of the pairing code
	Name       string `json:"name"`        // the client node's name
	Addr       string `json:"addr"`        // the client node's peer API HOST:PORT, "" if unknown
}

// Hello is the reply of GET /peer/v1/hello and of POST /peer/v1/pair: the
// server node.
type Hello struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
}

type peerKey struct{}

// PeerFrom returns the paired peer of a request that Handler passed on.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// Handler serves the peer API and passes the other /peer/ requests of
// paired peers to next (nil: 404). Requests of anyone else get 403
// not_paired and never reach next; paths outside /peer/ get 404.
func (s *Service) Handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+apischema.PeerPair, s.servePair)
	mux.HandleFunc("GET "+apischema.PeerHello, s.paired(http.HandlerFunc(s.serveHello)).ServeHTTP)
	if next == nil {
		next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, apischema.CodeNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
		})
	}
	mux.Handle(apischema.PeerPrefix, s.paired(next))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apischema.CodeNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// paired passes only requests of paired peers, with the Peer in the
// context.
func (s *Service) paired(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.PeerFromTLS(r.TLS)
		if !ok {
			msg := "this node is not paired with yours: pair first with `extrasphere node pair`"
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				msg = "no client certificate: only paired extrasphere nodes may use the peer API"
			}
			writeError(w, http.StatusForbidden, apischema.CodeNotPaired, msg)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p)))
	})
}

func (s *Service) serveHello(w http.ResponseWriter, r *http.Request) {
	id, err := s.Identity()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, apischema.CodeNoIdentity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, Hello{Name: id.Name, Fingerprint: id.Fingerprint})
}

func (s *Service) servePair(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusUnauthorized, apischema.CodeNoClientCert, "pairing needs a client certificate: pair with `extrasphere node pair` from an initialised node")
		return
	}
	var req PairRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPeerBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, apischema.CodeInvalidRequest, fmt.Sprintf("pair request body: %v", err))
		return
	}
	// The code is used up here, before the peer is stored: if storing
	// fails (a name conflict), the operator makes a fresh code; two
	// requests racing with one code never both pair.
	id, err := s.verifyPairSecret(req.CodeSecret)
	switch {
	case errors.Is(err, ErrRateLimited):
		writeError(w, http.StatusTooManyRequests, apischema.CodeRateLimited, err.Error())
		return
	case errors.Is(err, ErrBadCode):
		s.log.Warn("pairing refused: wrong, used or expired code", "remote", r.RemoteAddr, "name", req.Name)
		writeError(w, http.StatusForbidden, apischema.CodeBadCode, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, apischema.CodeNoIdentity, err.Error())
		return
	}
	der := r.TLS.PeerCertificates[0].Raw
	fp := Fingerprint(der)
	if fp == id.Fingerprint {
		writeError(w, http.StatusBadRequest, apischema.CodeInvalidRequest, "a node cannot pair with itself")
		return
	}
	p := Peer{
		Name:        req.Name,
		Fingerprint: fp,
		Addr:        peerAddr(req.Addr, r.RemoteAddr),
		CertPEM:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}
	if err := s.peers.Add(p); err != nil {
		switch {
		case errors.Is(err, ErrPeerConflict):
			writeError(w, http.StatusConflict, apischema.CodePeerConflict, err.Error())
		case errors.Is(err, ErrInvalidName):
			writeError(w, http.StatusBadRequest, apischema.CodeInvalidRequest, err.Error())
		default:
			s.log.Error("pairing failed", "peer", p.Name, "err", err)
			writeError(w, http.StatusInternalServerError, apischema.CodeInternal, err.Error())
		}
		return
	}
	s.log.Info("node paired (by the other node)", "peer", p.Name, "fingerprint", fp, "addr", p.Addr)
	writeJSON(w, http.StatusOK, Hello{Name: id.Name, Fingerprint: id.Fingerprint})
}

// peerAddr is the address to record for a pairing client: the one it
// advertises, with the host it connected from when it advertises none or
// an unspecified one (0.0.0.0, [::]).
func peerAddr(advertised, remote string) string {
	remoteHost, _, _ := net.SplitHostPort(remote)
	host, port, err := net.SplitHostPort(advertised)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = remoteHost
	}
	if host == "" || strings.ContainsAny(host, "/ ") {
		return ""
	}
	return net.JoinHostPort(host, port)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // the client went away if this fails
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apischema.ErrorBody{Error: msg, Code: code})
}
