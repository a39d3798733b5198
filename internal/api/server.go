// Package api serves the daemon's HTTP+JSON API (docs/API.md), a thin
// layer over the engine, and provides the Go client the CLI uses.
//
// Every route is under /v1. Successful responses are JSON (the attach
// route returns text/plain); errors are {"error": "...", "code": "..."}
// with a matching HTTP status. Who may call what is in auth.go.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/node"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Options configure the API handler.
type Options struct {
	Info   apischema.Info // returned by GET /v1/info
	Logger *slog.Logger

	// Access is the door the handler serves: the zero value is the TCP
	// door with no allowed host path, Access{Local: true} the unix socket.
	Access Access

	// Tokens authenticate the TCP door and are managed by the token
	// routes; nil: every TCP request is refused and the token routes
	// answer 501.
	Tokens *TokenStore
}

// server holds the handler's dependencies; its only mutable state is the
// refusal log's limiter.
type server struct {
	vols     Volumes
	chains   Chains
	cbt      Tracking
	backups  Backups
	mirrors  Mirrors
	peer     Peer
	clients  Clients
	jobs     Jobs
	node     *node.Service // nil without a node identity
	info     apischema.Info
	log      *slog.Logger
	access   Access
	tokens   *TokenStore
	refusals *logLimiter
	now      func() time.Time
}

// NewHandler returns the API handler over b.
func NewHandler(b Backend, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{vols: b, chains: b, cbt: b, backups: b, mirrors: b, clients: b, jobs: b, node: b.Node(), info: opts.Info, log: opts.Logger, access: opts.Access, tokens: opts.Tokens,
		refusals: &logLimiter{}, now: time.Now}
	return s.guard(s.routes())
}

// routes returns the routes, unguarded. Each needs the role routeRoles
// gives it (admin if none).
func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.getInfo)
	mux.HandleFunc("GET /v1/volumes", s.listVolumes)
	mux.HandleFunc("POST /v1/volumes", s.createVolume)
	mux.HandleFunc("GET /v1/volumes/{name}", s.getVolume)
	mux.HandleFunc("DELETE /v1/volumes/{name}", s.deleteVolume)
	mux.HandleFunc("PATCH /v1/volumes/{name}", s.patchVolume)
	mux.HandleFunc("POST /v1/volumes/{name}/import", s.importVolume)
	mux.HandleFunc("POST /v1/volumes/{name}/export", s.exportVolume)
	mux.HandleFunc("GET /v1/volumes/{name}/attach", s.attach)
	mux.HandleFunc("POST /v1/snapshots", s.createSnapshot)
	mux.HandleFunc("GET /v1/volumes/{name}/snapshots", s.listSnapshots)
	mux.HandleFunc("POST /v1/volumes/{name}/snapshots/{snap}/revert", s.revertSnapshot)
	mux.HandleFunc("DELETE /v1/volumes/{name}/snapshots/{snap}", s.deleteSnapshot)
	mux.HandleFunc("POST /v1/volumes/{name}/clone", s.cloneVolume)
	mux.HandleFunc("POST /v1/volumes/{name}/promote", s.promoteVolume)
	mux.HandleFunc("POST /v1/volumes/{name}/migrate", s.migrateVolume)
	mux.HandleFunc("POST /v1/volumes/{name}/cbt", s.enableCBT)
	mux.HandleFunc("GET /v1/volumes/{name}/cbt", s.listCBT)
	mux.HandleFunc("POST /v1/volumes/{name}/cbt/{bitmap}/clear", s.clearCBT)
	mux.HandleFunc("DELETE /v1/volumes/{name}/cbt/{bitmap}", s.removeCBT)
	mux.HandleFunc("GET /v1/jobs", s.listJobs)
	mux.HandleFunc("GET /v1/jobs/{id}", s.getJob)
	mux.HandleFunc("DELETE /v1/jobs/{id}", s.cancelJob)
	mux.HandleFunc("GET /v1/datastores", s.listDatastores)
	mux.HandleFunc("POST /v1/datastores", s.addDatastore)
	mux.HandleFunc("GET /v1/repos", s.listRepos)
	mux.HandleFunc("POST /v1/repos", s.addRepo)
	mux.HandleFunc("DELETE /v1/repos/{name}", s.deleteRepo)
	mux.HandleFunc("POST /v1/backups", s.startBackup)
	mux.HandleFunc("GET /v1/backups", s.listBackups)
	mux.HandleFunc("POST /v1/backups/verify", s.verifyBackups)
	mux.HandleFunc("POST /v1/backups/prune", s.pruneBackups)
	mux.HandleFunc("POST /v1/backups/serve", s.serveBackup)
	mux.HandleFunc("POST /v1/restores", s.startRestore)
	mux.HandleFunc("GET /v1/mirrors", s.listMirrors)
	mux.HandleFunc("POST /v1/mirrors", s.createMirror)
	mux.HandleFunc("POST /v1/mirrors/{name}/pause", s.pauseMirror)
	mux.HandleFunc("POST /v1/mirrors/{name}/resume", s.resumeMirror)
	mux.HandleFunc("DELETE /v1/mirrors/{name}", s.deleteMirror)
	mux.HandleFunc("POST /v1/volumes/{name}/failover", s.failover)
	mux.HandleFunc("POST /v1/volumes/{name}/failback", s.failback)
	mux.HandleFunc("GET /v1/node", s.getNode)
	mux.HandleFunc("POST /v1/node/init", s.initNode)
	mux.HandleFunc("POST /v1/node/code", s.newPairingCode)
	mux.HandleFunc("POST /v1/node/pair", s.pairNode)
	mux.HandleFunc("GET /v1/node/peers", s.listNodePeers)
	mux.HandleFunc("DELETE /v1/node/peers/{name}", s.unpairNode)
	s.registerClientRoutes(mux)
	mux.HandleFunc("GET /v1/tokens", s.listTokens)
	mux.HandleFunc("POST /v1/tokens", s.createToken)
	mux.HandleFunc("DELETE /v1/tokens/{name}", s.deleteToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apischema.ErrorBody{Error: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), Code: apischema.CodeNotFound})
	})
	return mux
}

func (s *server) getInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.info)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the client went away if this fails; nothing to do
}

// writeError maps err to a status and code and writes the error body.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusFor(err)
	if status >= 500 {
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, apischema.ErrorBody{Error: errorMessage(r, status, err), Code: code})
}

// decode reads a JSON body into v, refusing unknown fields.
func decode(r *http.Request, w http.ResponseWriter, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("request body: empty, want a JSON object: %w", errkind.ErrInvalidArgument)
		}
		return fmt.Errorf("request body: %v: %w", err, errkind.ErrInvalidArgument)
	}
	return nil
}
