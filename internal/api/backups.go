package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3"
)

func (s *server) listRepos(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backups.ListRepos(r.Context()))
}

func (s *server) addRepo(w http.ResponseWriter, r *http.Request) {
	var req apischema.RepoRequest
	err := decode(r, w, &req)
	if err == nil && !s3.IsURL(req.Location) {
		err = hostPath(r, &req.Location)
	}
	if err == nil {
		err = hostPath(r, &req.PasswordFile)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.backups.AddRepo(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) deleteRepo(w http.ResponseWriter, r *http.Request) {
	if err := s.backups.RemoveRepo(r.Context(), r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) startBackup(w http.ResponseWriter, r *http.Request) {
	var req apischema.BackupRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := s.backups.Backup(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

func (s *server) listBackups(w http.ResponseWriter, r *http.Request) {
	bs, err := s.backups.ListBackups(r.Context(), r.URL.Query().Get("repo"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bs)
}

func (s *server) verifyBackups(w http.ResponseWriter, r *http.Request) {
	var req apischema.VerifyRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.backups.VerifyBackups(r.Context(), req.Repo, req.ReadData)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *server) pruneBackups(w http.ResponseWriter, r *http.Request) {
	var req apischema.PruneRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.backups.PruneBackups(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *server) startRestore(w http.ResponseWriter, r *http.Request) {
	var req apischema.RestoreRequest
	err := decode(r, w, &req)
	if err == nil {
		err = hostPath(r, &req.ToFile)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := s.backups.Restore(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

// Repos calls GET /v1/repos.
func (c *Client) Repos(ctx context.Context) ([]apischema.RepoInfo, error) {
	var out []apischema.RepoInfo
	err := c.do(ctx, http.MethodGet, "/v1/repos", nil, &out)
	return out, err
}

// AddRepo calls POST /v1/repos.
func (c *Client) AddRepo(ctx context.Context, req apischema.RepoRequest) (apischema.RepoInfo, error) {
	var out apischema.RepoInfo
	err := c.do(ctx, http.MethodPost, "/v1/repos", req, &out)
	return out, err
}

// RemoveRepo calls DELETE /v1/repos/{name}.
func (c *Client) RemoveRepo(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/repos/"+url.PathEscape(name), nil, nil)
}

// Backup calls POST /v1/backups.
func (c *Client) Backup(ctx context.Context, req apischema.BackupRequest) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/backups", req, &out)
	return out, err
}

// Backups calls GET /v1/backups?repo=R.
func (c *Client) Backups(ctx context.Context, repo string) ([]apischema.BackupInfo, error) {
	var out []apischema.BackupInfo
	err := c.do(ctx, http.MethodGet, "/v1/backups?repo="+url.QueryEscape(repo), nil, &out)
	return out, err
}

// VerifyBackups calls POST /v1/backups/verify.
func (c *Client) VerifyBackups(ctx context.Context, req apischema.VerifyRequest) (apischema.VerifyReport, error) {
	var out apischema.VerifyReport
	err := c.do(ctx, http.MethodPost, "/v1/backups/verify", req, &out)
	return out, err
}

// PruneBackups calls POST /v1/backups/prune.
func (c *Client) PruneBackups(ctx context.Context, req apischema.PruneRequest) (apischema.PruneReport, error) {
	var out apischema.PruneReport
	err := c.do(ctx, http.MethodPost, "/v1/backups/prune", req, &out)
	return out, err
}

// Restore calls POST /v1/restores.
func (c *Client) Restore(ctx context.Context, req apischema.RestoreRequest) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/restores", req, &out)
	return out, err
}

func (s *server) serveBackup(w http.ResponseWriter, r *http.Request) {
	var req apischema.ServeRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.backups.ServeBackup(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

// ServeBackup calls POST /v1/backups/serve.
func (c *Client) ServeBackup(ctx context.Context, req apischema.ServeRequest) (apischema.VolumeInfo, error) {
	var out apischema.VolumeInfo
	err := c.do(ctx, http.MethodPost, "/v1/backups/serve", req, &out)
	return out, err
}
