package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

func (s *server) listVolumes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vols.ListVolumes(r.Context()))
}

func (s *server) createVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.CreateVolumeRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.vols.CreateVolume(r.Context(), engine.CreateOptions{Name: req.Name, Size: req.Size,
		Datastore: req.Datastore, Preallocate: req.Preallocate, ReadOnly: req.ReadOnly})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) getVolume(w http.ResponseWriter, r *http.Request) {
	in, err := s.vols.GetVolume(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	force, err := boolParam(r, "force")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.vols.RemoveVolume(r.Context(), r.PathValue("name"), force); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) patchVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.PatchVolumeRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ReadOnly == nil {
		s.writeError(w, r, fmt.Errorf("nothing to change: the body sets no field (read_only): %w", errkind.ErrInvalidArgument))
		return
	}
	in, err := s.vols.SetReadOnly(r.Context(), r.PathValue("name"), *req.ReadOnly)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) importVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.ImportRequest
	err := decode(r, w, &req)
	if err == nil {
		err = hostPath(r, &req.Path)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := s.vols.Import(r.Context(), r.PathValue("name"), engine.ImportOptions{Path: req.Path, Format: req.Format,
		Datastore: req.Datastore, Size: req.Size})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

func (s *server) exportVolume(w http.ResponseWriter, r *http.Request) {
	var req apischema.ExportRequest
	err := decode(r, w, &req)
	if err == nil {
		err = hostPath(r, &req.Path)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j, err := s.vols.Export(r.Context(), r.PathValue("name"), engine.ExportOptions{Path: req.Path, Format: req.Format})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

func (s *server) attach(w http.ResponseWriter, r *http.Request) {
	tcp, err := boolParam(r, "tcp")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		kind = apischema.AttachQEMU
	}
	text, err := s.vols.AttachTLS(r.Context(), r.PathValue("name"), kind, tcp, r.URL.Query().Get("tls_dir"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(text))
}

// boolParam parses an optional boolean query parameter ("1", "true", ...).
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s=%q: want 1/0 or true/false: %w", name, v, errkind.ErrInvalidArgument)
	}
	return b, nil
}
