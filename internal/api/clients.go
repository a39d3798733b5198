package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
)

// NBD client routes (who may use NBD over TCP with TLS):
//
//	GET    /v1/clients          -> 200 []apischema.ClientInfo
//	POST   /v1/clients          apischema.ClientRequest -> 201 apischema.ClientCredentials
//	DELETE /v1/clients/{name}   -> 204 (revoked for every new connection)

// clientErrorMap maps NBD client errors to statuses and codes, checked
// before errorMap.
var clientErrorMap = []struct {
	err    error
	status int
	code   string
}{
	{engine.ErrClientNotFound, http.StatusNotFound, apischema.CodeClientNotFound},
	{engine.ErrClientExists, http.StatusConflict, apischema.CodeClientExists},
	{engine.ErrNoClientCA, http.StatusNotImplemented, apischema.CodeNoClientCA},
}

// registerClientRoutes adds the NBD client routes to mux.
func (s *server) registerClientRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/clients", s.listClients)
	mux.HandleFunc("POST /v1/clients", s.addClient)
	mux.HandleFunc("DELETE /v1/clients/{name}", s.removeClient)
}

func (s *server) writeClientError(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range clientErrorMap {
		if errors.Is(err, m.err) {
			writeJSON(w, m.status, apischema.ErrorBody{Error: err.Error(), Code: m.code})
			return
		}
	}
	s.writeError(w, r, err)
}

func (s *server) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := s.clients.Clients(r.Context())
	if err != nil {
		s.writeClientError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (s *server) addClient(w http.ResponseWriter, r *http.Request) {
	var req apischema.ClientRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.clients.AddClient(r.Context(), req)
	if err != nil {
		s.writeClientError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) removeClient(w http.ResponseWriter, r *http.Request) {
	if err := s.clients.RemoveClient(r.Context(), r.PathValue("name")); err != nil {
		s.writeClientError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Clients calls GET /v1/clients.
func (c *Client) Clients(ctx context.Context) ([]apischema.ClientInfo, error) {
	var out []apischema.ClientInfo
	err := c.do(ctx, http.MethodGet, "/v1/clients", nil, &out)
	return out, err
}

// AddClient calls POST /v1/clients.
func (c *Client) AddClient(ctx context.Context, req apischema.ClientRequest) (apischema.ClientCredentials, error) {
	var out apischema.ClientCredentials
	err := c.do(ctx, http.MethodPost, "/v1/clients", req, &out)
	return out, err
}

// RemoveClient calls DELETE /v1/clients/{name}.
func (c *Client) RemoveClient(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/clients/"+url.PathEscape(name), nil, nil)
}

// AttachTLS is Attach with the directory of the client's certificates for
// a TCP attach (GET /v1/volumes/{name}/attach?tls_dir=DIR).
func (c *Client) AttachTLS(ctx context.Context, name, kind string, tcp bool, tlsDir string) (string, error) {
	q := url.Values{"kind": {kind}}
	if tcp {
		q.Set("tcp", "1")
	}
	if tlsDir != "" {
		q.Set("tls_dir", tlsDir)
	}
	var out bytes.Buffer
	err := c.do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name)+"/attach?"+q.Encode(), nil, &out)
	return out.String(), err
}
