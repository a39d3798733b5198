package api

import (
	"context"
	"net/http"
	"net/url"
)

// Token routes (admin only; see routeRoles):
//
//	GET    /v1/tokens          -> 200 []Token
//	POST   /v1/tokens          {"name": N, "role": R} -> 201 NewToken (the secret, shown once)
//	DELETE /v1/tokens/{name}   -> 204

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// NewToken is the body of a 201 of POST /v1/tokens: the token's secret
// is in it, and never again.
type NewToken struct {
	Token
	Secret string `json:"token"`
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request) {
	if s.tokens == nil {
		s.writeError(w, r, ErrNoTokens)
		return
	}
	writeJSON(w, http.StatusOK, s.tokens.List())
}

func (s *server) createToken(w http.ResponseWriter, r *http.Request) {
	var req CreateTokenRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.tokens == nil {
		s.writeError(w, r, ErrNoTokens)
		return
	}
	secret, t, err := s.tokens.Create(req.Name, req.Role)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("api token created", "name", t.Name, "role", t.Role, "by", callerFrom(r.Context()).describe())
	writeJSON(w, http.StatusCreated, NewToken{Token: t, Secret: secret})
}

func (s *server) deleteToken(w http.ResponseWriter, r *http.Request) {
	if s.tokens == nil {
		s.writeError(w, r, ErrNoTokens)
		return
	}
	name := r.PathValue("name")
	if err := s.tokens.Remove(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("api token removed", "name", name, "by", callerFrom(r.Context()).describe())
	w.WriteHeader(http.StatusNoContent)
}

// describe names the caller for logs.
func (c caller) describe() string {
	if c.local {
		return "unix socket"
	}
	return "token " + c.token
}

// Tokens calls GET /v1/tokens.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out, err
}

// CreateToken calls POST /v1/tokens.
func (c *Client) CreateToken(ctx context.Context, name string, role Role) (NewToken, error) {
	var out NewToken
	err := c.do(ctx, http.MethodPost, "/v1/tokens", CreateTokenRequest{Name: name, Role: role}, &out)
	return out, err
}

// RemoveToken calls DELETE /v1/tokens/{name}.
func (c *Client) RemoveToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil)
}
