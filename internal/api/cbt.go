package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/cbt"
)

// Changed-block tracking routes:
//
//	POST   /v1/volumes/{name}/cbt                   {"bitmap": NAME} -> 201 cbt.BitmapInfo
//	GET    /v1/volumes/{name}/cbt                   -> 200 apischema.CBTInfo
//	POST   /v1/volumes/{name}/cbt/{bitmap}/clear    -> 200 cbt.BitmapInfo (reset to all clean)
//	DELETE /v1/volumes/{name}/cbt/{bitmap}          -> 204 (forget the bitmap)

func (s *server) enableCBT(w http.ResponseWriter, r *http.Request) {
	var req apischema.EnableCBTRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.cbt.EnableCBT(r.Context(), r.PathValue("name"), req.Bitmap)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) listCBT(w http.ResponseWriter, r *http.Request) {
	in, err := s.cbt.ListCBT(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) clearCBT(w http.ResponseWriter, r *http.Request) {
	in, err := s.cbt.ClearCBT(r.Context(), r.PathValue("name"), r.PathValue("bitmap"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *server) removeCBT(w http.ResponseWriter, r *http.Request) {
	if err := s.cbt.RemoveCBT(r.Context(), r.PathValue("name"), r.PathValue("bitmap")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EnableCBT calls POST /v1/volumes/{name}/cbt; bitmap "" means "cbt".
func (c *Client) EnableCBT(ctx context.Context, vol, bitmap string) (cbt.BitmapInfo, error) {
	var out cbt.BitmapInfo
	err := c.do(ctx, http.MethodPost, cbtPath(vol), apischema.EnableCBTRequest{Bitmap: bitmap}, &out)
	return out, err
}

// CBT returns GET /v1/volumes/{name}/cbt.
func (c *Client) CBT(ctx context.Context, vol string) (apischema.CBTInfo, error) {
	var out apischema.CBTInfo
	err := c.do(ctx, http.MethodGet, cbtPath(vol), nil, &out)
	return out, err
}

// ClearCBT calls POST /v1/volumes/{name}/cbt/{bitmap}/clear.
func (c *Client) ClearCBT(ctx context.Context, vol, bitmap string) (cbt.BitmapInfo, error) {
	var out cbt.BitmapInfo
	err := c.do(ctx, http.MethodPost, cbtPath(vol)+"/"+url.PathEscape(bitmap)+"/clear", nil, &out)
	return out, err
}

// RemoveCBT calls DELETE /v1/volumes/{name}/cbt/{bitmap}.
func (c *Client) RemoveCBT(ctx context.Context, vol, bitmap string) error {
	return c.do(ctx, http.MethodDelete, cbtPath(vol)+"/"+url.PathEscape(bitmap), nil, nil)
}

func cbtPath(vol string) string { return "/v1/volumes/" + url.PathEscape(vol) + "/cbt" }
