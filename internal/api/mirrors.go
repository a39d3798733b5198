package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/node"
)

func (s *server) createMirror(w http.ResponseWriter, r *http.Request) {
	var req apischema.MirrorOptions
	err := decode(r, w, &req)
	if err == nil {
		err = mirrorTargetPath(r, &req.Target)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.mirrors.CreateMirror(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) listMirrors(w http.ResponseWriter, r *http.Request) {
	ms, err := s.mirrors.ListMirrors(r.Context(), r.URL.Query().Get("volume"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ms == nil {
		ms = []apischema.MirrorInfo{}
	}
	writeJSON(w, http.StatusOK, ms)
}

func (s *server) pauseMirror(w http.ResponseWriter, r *http.Request) {
	s.mirrorOp(w, r, s.mirrors.PauseMirror)
}

func (s *server) resumeMirror(w http.ResponseWriter, r *http.Request) {
	s.mirrorOp(w, r, s.mirrors.ResumeMirror)
}

func (s *server) mirrorOp(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, name string) (apischema.MirrorInfo, error)) {
	in, err := fn(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) deleteMirror(w http.ResponseWriter, r *http.Request) {
	if err := s.mirrors.RemoveMirror(r.Context(), r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) failover(w http.ResponseWriter, r *http.Request) {
	var req apischema.FailoverRequest
	if r.ContentLength != 0 {
		if err := decode(r, w, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	in, err := s.mirrors.Failover(r.Context(), r.PathValue("name"), req.Force)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) failback(w http.ResponseWriter, r *http.Request) {
	in, err := s.mirrors.Failback(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// NewPeerHandler serves the engine's part of the peer API (/peer/v1/...),
// to be mounted behind node.Service.Handler, which lets only paired nodes
// through and puts the peer in the request context.
func NewPeerHandler(p Peer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{peer: p, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+apischema.PeerReplicas, s.peerCreateReplica)
	mux.HandleFunc("POST "+apischema.PeerFailback, s.peerFailback)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apischema.ErrorBody{Error: "no route " + r.Method + " " + r.URL.Path, Code: apischema.CodeNotFound})
	})
	return mux
}

func (s *server) peerCreateReplica(w http.ResponseWriter, r *http.Request) {
	p, ok := node.PeerFrom(r.Context())
	if !ok {
		writeJSON(w, http.StatusForbidden, apischema.ErrorBody{Error: "not a paired node", Code: apischema.CodeNotPaired})
		return
	}
	var req apischema.ReplicaRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.peer.CreateReplica(r.Context(), p, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) peerFailback(w http.ResponseWriter, r *http.Request) {
	p, ok := node.PeerFrom(r.Context())
	if !ok {
		writeJSON(w, http.StatusForbidden, apischema.ErrorBody{Error: "not a paired node", Code: apischema.CodeNotPaired})
		return
	}
	var req apischema.FailbackRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.peer.AcceptFailback(r.Context(), p, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Mirrors calls GET /v1/mirrors (vol "" for all).
func (c *Client) Mirrors(ctx context.Context, vol string) ([]apischema.MirrorInfo, error) {
	var out []apischema.MirrorInfo
	path := "/v1/mirrors"
	if vol != "" {
		path += "?volume=" + url.QueryEscape(vol)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// CreateMirror calls POST /v1/mirrors.
func (c *Client) CreateMirror(ctx context.Context, req apischema.MirrorOptions) (apischema.MirrorInfo, error) {
	var out apischema.MirrorInfo
	err := c.do(ctx, http.MethodPost, "/v1/mirrors", req, &out)
	return out, err
}

// MirrorAction calls POST /v1/mirrors/{name}/pause or /resume.
func (c *Client) MirrorAction(ctx context.Context, name, action string) (apischema.MirrorInfo, error) {
	var out apischema.MirrorInfo
	err := c.do(ctx, http.MethodPost, "/v1/mirrors/"+url.PathEscape(name)+"/"+action, nil, &out)
	return out, err
}

// RemoveMirror calls DELETE /v1/mirrors/{name}.
func (c *Client) RemoveMirror(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/mirrors/"+url.PathEscape(name), nil, nil)
}

// Failover calls POST /v1/volumes/{name}/failover.
func (c *Client) Failover(ctx context.Context, name string, force bool) (apischema.MirrorInfo, error) {
	var out apischema.MirrorInfo
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/failover", apischema.FailoverRequest{Force: force}, &out)
	return out, err
}

// Failback calls POST /v1/volumes/{name}/failback.
func (c *Client) Failback(ctx context.Context, name string) (apischema.MirrorInfo, error) {
	var out apischema.MirrorInfo
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/failback", nil, &out)
	return out, err
}
