package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/job"
)

func (s *server) cloneVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.CloneRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.chains.Clone(r.Context(), r.PathValue("name"), req.Snapshot, req.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) promoteVolume(w http.ResponseWriter, r *http.Request) {
	j, err := s.chains.Promote(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, j)
}

func (s *server) migrateVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.MigrateRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := s.chains.Migrate(r.Context(), r.PathValue("name"), req.Datastore, req.Rate)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, j)
}

// Clone calls POST /v1/volumes/{name}/clone.
func (c *Client) Clone(ctx context.Context, src string, req apischema.CloneRequest) (apischema.VolumeInfo, error) {
	var out apischema.VolumeInfo
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(src)+"/clone", req, &out)
	return out, err
}

// Promote calls POST /v1/volumes/{name}/promote.
func (c *Client) Promote(ctx context.Context, name string) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/promote", nil, &out)
	return out, err
}

// Migrate calls POST /v1/volumes/{name}/migrate.
func (c *Client) Migrate(ctx context.Context, name string, req apischema.MigrateRequest) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/migrate", req, &out)
	return out, err
}
