package api

import (
	"fmt"
	"net/http"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

func (s *server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req apischema.CreateSnapshotRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Volumes) == 0 {
		s.writeError(w, r, fmt.Errorf("snapshot: the body names no volume (volumes: [...]): %w", errkind.ErrInvalidArgument))
		return
	}
	out, err := s.chains.CreateSnapshot(r.Context(), req.Volumes, req.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	out, err := s.chains.ListSnapshots(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) revertSnapshot(w http.ResponseWriter, r *http.Request) {
	in, err := s.chains.RevertSnapshot(r.Context(), r.PathValue("name"), r.PathValue("snap"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	j, err := s.chains.RemoveSnapshot(r.Context(), r.PathValue("name"), r.PathValue("snap"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}
