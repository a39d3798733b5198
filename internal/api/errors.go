package api

import (
	"errors"
	"net/http"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/engine"
)

// Sentinels of access control (auth*.go).
var (
	// ErrPathNotAllowed: a host path in a request over TCP is outside
	// every directory of `serve --allow-path` (symlinks and ".." resolved).
	ErrPathNotAllowed = errors.New("host path not allowed")

	// ErrInvalidRole: a role name other than admin, operator, read, metrics.
	ErrInvalidRole = errors.New("invalid role")

	// ErrInvalidToken: a token name that is not a valid name, or one token
	// too many.
	ErrInvalidToken = errors.New("invalid token request")

	// ErrTokenExists: a token of that name exists; remove it first.
	ErrTokenExists = errors.New("token exists")

	// ErrTokenNotFound: no token of that name.
	ErrTokenNotFound = errors.New("no such token")

	// ErrNoTokens: the daemon was started without a token store.
	ErrNoTokens = errors.New("this daemon has no token store")

	// ErrNoAPICA: a client of the TCP door has no CA certificate to check
	// the daemon's certificate with.
	ErrNoAPICA = errors.New("no CA certificate for the API")
)

// Error codes of the API (the "code" field). They are API values: must
// not change.
const (
	CodeVolumeNotFound    = "volume_not_found"
	CodeVolumeExists      = "volume_exists"
	CodeVolumeInUse       = "volume_in_use"
	CodeVolumeUnavailable = "volume_unavailable"
	CodeDatastoreNotFound = "datastore_not_found"
	CodeDatastoreExists   = "datastore_exists"
	CodeDatastoreOffline  = "datastore_offline"
	CodeSnapshotNotFound  = "snapshot_not_found"
	CodeSnapshotExists    = "snapshot_exists"
	CodeJobNotFound       = "job_not_found"
	CodeBitmapNotFound    = "bitmap_not_found"
	CodeBitmapExists      = "bitmap_exists"
	CodeRepoNotFound      = "repo_not_found"
	CodeRepoExists        = "repo_exists"
	CodeRepoError         = "repo_error"
	CodeBackupNotFound    = "backup_not_found"
	CodeInvalidArgument   = "invalid_argument"
	CodeFileExists        = "file_exists"
	CodeQemuImgMissing    = "qemu_img_missing"
	CodeNoTCP             = "no_tcp"
	CodeNoSpace           = "no_space"
	CodeShuttingDown      = "shutting_down"
	CodeNotFound          = "not_found"
	CodeMirrorNotFound    = "mirror_not_found"
	CodeMirrorExists      = "mirror_exists"
	CodeNotReplica        = "not_replica"
	CodeSplitBrain        = "split_brain"
	CodePeerError         = "peer_error"
	CodeInternal          = "internal"
)

// errorMap maps engine sentinels to HTTP statuses and codes, checked in
// order.
var errorMap = []struct {
	err    error
	status int
	code   string
}{
	{engine.ErrVolumeNotFound, http.StatusNotFound, CodeVolumeNotFound},
	{engine.ErrVolumeExists, http.StatusConflict, CodeVolumeExists},
	{engine.ErrVolumeInUse, http.StatusConflict, CodeVolumeInUse},
	{engine.ErrVolumeUnavailable, http.StatusConflict, CodeVolumeUnavailable},
	{engine.ErrDatastoreNotFound, http.StatusNotFound, CodeDatastoreNotFound},
	{engine.ErrDatastoreExists, http.StatusConflict, CodeDatastoreExists},
	{engine.ErrDatastoreOffline, http.StatusConflict, CodeDatastoreOffline},
	{engine.ErrSnapshotNotFound, http.StatusNotFound, CodeSnapshotNotFound},
	{engine.ErrSnapshotExists, http.StatusConflict, CodeSnapshotExists},
	{engine.ErrJobNotFound, http.StatusNotFound, CodeJobNotFound},
	{cbt.ErrBitmapNotFound, http.StatusNotFound, CodeBitmapNotFound},
	{cbt.ErrBitmapExists, http.StatusConflict, CodeBitmapExists},
	{engine.ErrRepoNotFound, http.StatusNotFound, CodeRepoNotFound},
	{engine.ErrRepoExists, http.StatusConflict, CodeRepoExists},
	{engine.ErrBackupNotFound, http.StatusNotFound, CodeBackupNotFound},
	{engine.ErrFileExists, http.StatusConflict, CodeFileExists},
	{engine.ErrQemuImgMissing, http.StatusNotImplemented, CodeQemuImgMissing},
	{engine.ErrNoTCP, http.StatusConflict, CodeNoTCP},
	{engine.ErrInvalidArgument, http.StatusBadRequest, CodeInvalidArgument},
	{blockdev.ErrNoSpace, http.StatusInsufficientStorage, CodeNoSpace},
	{engine.ErrClosed, http.StatusServiceUnavailable, CodeShuttingDown},
	{engine.ErrRepo, http.StatusBadGateway, CodeRepoError},
	{engine.ErrMirrorNotFound, http.StatusNotFound, CodeMirrorNotFound},
	{engine.ErrMirrorExists, http.StatusConflict, CodeMirrorExists},
	{engine.ErrNotReplica, http.StatusConflict, CodeNotReplica},
	{engine.ErrSplitBrain, http.StatusConflict, CodeSplitBrain},
	{engine.ErrPeer, http.StatusBadGateway, CodePeerError},
	{ErrPathNotAllowed, http.StatusForbidden, CodePathNotAllowed},
	{ErrInvalidRole, http.StatusBadRequest, CodeInvalidArgument},
	{ErrInvalidToken, http.StatusBadRequest, CodeInvalidArgument},
	{ErrTokenExists, http.StatusConflict, CodeTokenExists},
	{ErrTokenNotFound, http.StatusNotFound, CodeTokenNotFound},
	{ErrNoTokens, http.StatusNotImplemented, CodeTokensDisabled},
}

// statusFor returns the HTTP status and code of an engine error.
func statusFor(err error) (int, string) {
	for _, m := range errorMap {
		if errors.Is(err, m.err) {
			return m.status, m.code
		}
	}
	return http.StatusInternalServerError, CodeInternal
}
