package api

// Access control (docs/API.md, "Authentication and roles").
//
// The same routes are served through two doors, each with its own handler
// (Options.Access):
//
//   - the local door, the unix socket (mode 0660): its users are already
//     trusted with the data directory, so every caller is admin, may name any
//     host path and needs no token. The first token is made here.
//   - the TCP door: HTTPS only (auth_tls.go), a bearer token on every
//     request (auth_tokens.go). The token's role must reach the route's
//     (auth_policy.go), and host paths in a request must lie under a
//     directory of `serve --allow-path` (auth_paths.go); non-admins get
//     error messages without host paths (auth_redact.go).
//
// Both doors refuse what a web page could send: a request whose Origin is
// not the API's own (403), and a body that is not application/json (415),
// which no HTML form or "simple" cross-site request can produce.
//
// The checks run in this order, before any handler reads the body:
// Origin (403), token (401), role (403), Content-Type (415).

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// Role is what a token may do. Each role may do everything the roles
// below it may.
type Role int

// Roles, lowest first. Their names are API values: must not change.
const (
	RoleNone     Role = iota // no access (never stored)
	RoleMetrics              // GET /metrics only
	RoleRead                 // every read-only route except secrets (tokens, pairing codes, clients)
	RoleOperator             // read + day-to-day changes: volumes, snapshots, jobs, backups, mirrors
	RoleAdmin                // everything: tokens, clients, node pairing, datastores, repositories
)

var roleNames = map[Role]string{RoleMetrics: "metrics", RoleRead: "read", RoleOperator: "operator", RoleAdmin: "admin"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads a role name; an unknown one wraps ErrInvalidRole.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w %q: want admin, operator, read or metrics", ErrInvalidRole, s)
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) {
	if _, ok := roleNames[r]; !ok {
		return nil, fmt.Errorf("%w: %d", ErrInvalidRole, int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Access says who may call through a handler.
type Access struct {
	// Local marks the local door (the unix socket): every caller is
	// admin, no token is asked, any host path is allowed. False (the zero
	// value) is the TCP door: locked unless a token says otherwise.
	Local bool

	// Paths are the host directories the TCP door allows in requests;
	// nil allows none. Ignored on the local door.
	Paths *PathPolicy
}

// caller is who sent a request, as the guard established it.
type caller struct {
	role  Role
	token string      // the token's name; "" on the local door
	paths *PathPolicy // the allowed host paths; nil: any (the local door)
	local bool
}

type callerKey struct{}

// callerFrom returns the request's caller. A request that did not pass
// the guard (a bug, or the peer API, which takes no host path) gets no
// rights.
func callerFrom(ctx context.Context) caller {
	c, ok := callerOf(ctx)
	if !ok {
		return caller{role: RoleNone, paths: &PathPolicy{}}
	}
	return c
}

// callerOf returns the caller the guard put in ctx, if any.
func callerOf(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok
}

// guard wraps the routes of mux with the access checks of the package
// doc. It calls mux.Handler to learn the route a request will reach, so
// the role check happens before the handler runs.
func (s *server) guard(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, ownOrigin(r)) {
			s.refused(r, "foreign origin "+o)
			writeJSON(w, http.StatusForbidden, apischema.ErrorBody{Code: apischema.CodeForbiddenOrigin,
				Error: "cross-site request refused: the Origin header is not this API's own; use the CLI or a client that sends no Origin"})
			return
		}
		c, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		_, pattern := mux.Handler(r)
		if need := routeRole(pattern); c.role < need {
			s.refused(r, fmt.Sprintf("token %s (role %s) may not call %s", c.token, c.role, pattern))
			writeJSON(w, http.StatusForbidden, apischema.ErrorBody{Code: apischema.CodeForbidden,
				Error: fmt.Sprintf("token %s has role %s; %s %s needs role %s", c.token, c.role, r.Method, r.URL.Path, need)})
			return
		}
		if hasBody(r) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeJSON(w, http.StatusUnsupportedMediaType, apischema.ErrorBody{Code: apischema.CodeUnsupportedMedia,
					Error: fmt.Sprintf("request body of type %q refused: send Content-Type: application/json", r.Header.Get("Content-Type"))})
				return
			}
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// authenticate returns the caller of r: admin on the local door, the
// token's role on the TCP door. It writes the 401 itself.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (caller, bool) {
	if s.access.Local {
		return caller{role: RoleAdmin, local: true}, true
	}
	paths := s.access.Paths
	if paths == nil {
		paths = &PathPolicy{}
	}
	secret, hasBearer := bearer(r)
	if hasBearer && s.tokens != nil {
		if t, ok := s.tokens.Authenticate(secret); ok {
			return caller{role: t.Role, token: t.Name, paths: paths}, true
		}
	}
	msg := "this API needs a token: set EXTRASPHERE_TOKEN (make one with `extrasphere token create NAME --role ROLE` on the daemon's host)"
	if hasBearer {
		msg = "the token is not valid (unknown or removed): make a new one with `extrasphere token create` on the daemon's host"
		s.refused(r, "invalid token")
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="extrasphere"`)
	writeJSON(w, http.StatusUnauthorized, apischema.ErrorBody{Code: apischema.CodeUnauthorized, Error: msg})
	return caller{}, false
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// ownOrigin is the origin a page served by this API would have.
func ownOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// hasBody reports whether r carries a body (of known or unknown length).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// refused logs a refused request, at most once per client address per
// refusalLogEvery (a flood of bad requests does not flood the log).
func (s *server) refused(r *http.Request, why string) {
	if s.refusals.allow(remoteHost(r.RemoteAddr), s.now()) {
		s.log.Warn("api request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "why", why)
	}
}
