package api

import (
	"net/http"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func (s *server) listDatastores(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vols.ListDatastores(r.Context()))
}

func (s *server) addDatastore(w http.ResponseWriter, r *http.Request) {
	var req apischema.AddDatastoreRequest
	err := decode(r, w, &req)
	if err == nil {
		err = hostPath(r, &req.Path)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.vols.AddDatastore(r.Context(), req.Name, req.Path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}
