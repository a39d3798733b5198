package api

import (
	"errors"
	"net/http"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/errkind"
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

// errorMap maps engine sentinels to HTTP statuses and codes, checked in
// order.
var errorMap = []struct {
	err    error
	status int
	code   string
}{
	{errkind.ErrVolumeNotFound, http.StatusNotFound, apischema.CodeVolumeNotFound},
	{errkind.ErrVolumeExists, http.StatusConflict, apischema.CodeVolumeExists},
	{errkind.ErrVolumeInUse, http.StatusConflict, apischema.CodeVolumeInUse},
	{errkind.ErrVolumeUnavailable, http.StatusConflict, apischema.CodeVolumeUnavailable},
	{errkind.ErrDatastoreNotFound, http.StatusNotFound, apischema.CodeDatastoreNotFound},
	{errkind.ErrDatastoreExists, http.StatusConflict, apischema.CodeDatastoreExists},
	{errkind.ErrDatastoreOffline, http.StatusConflict, apischema.CodeDatastoreOffline},
	{errkind.ErrSnapshotNotFound, http.StatusNotFound, apischema.CodeSnapshotNotFound},
	{errkind.ErrSnapshotExists, http.StatusConflict, apischema.CodeSnapshotExists},
	{engine.ErrJobNotFound, http.StatusNotFound, apischema.CodeJobNotFound},
	{cbt.ErrBitmapNotFound, http.StatusNotFound, apischema.CodeBitmapNotFound},
	{cbt.ErrBitmapExists, http.StatusConflict, apischema.CodeBitmapExists},
	{engine.ErrRepoNotFound, http.StatusNotFound, apischema.CodeRepoNotFound},
	{engine.ErrRepoExists, http.StatusConflict, apischema.CodeRepoExists},
	{errkind.ErrBackupNotFound, http.StatusNotFound, apischema.CodeBackupNotFound},
	{errkind.ErrFileExists, http.StatusConflict, apischema.CodeFileExists},
	{errkind.ErrQemuImgMissing, http.StatusNotImplemented, apischema.CodeQemuImgMissing},
	{errkind.ErrNoTCP, http.StatusConflict, apischema.CodeNoTCP},
	{errkind.ErrInvalidArgument, http.StatusBadRequest, apischema.CodeInvalidArgument},
	{blockdev.ErrNoSpace, http.StatusInsufficientStorage, apischema.CodeNoSpace},
	{errkind.ErrClosed, http.StatusServiceUnavailable, apischema.CodeShuttingDown},
	{engine.ErrRepo, http.StatusBadGateway, apischema.CodeRepoError},
	{errkind.ErrMirrorNotFound, http.StatusNotFound, apischema.CodeMirrorNotFound},
	{errkind.ErrMirrorExists, http.StatusConflict, apischema.CodeMirrorExists},
	{errkind.ErrNotReplica, http.StatusConflict, apischema.CodeNotReplica},
	{errkind.ErrSplitBrain, http.StatusConflict, apischema.CodeSplitBrain},
	{errkind.ErrPeer, http.StatusBadGateway, apischema.CodePeerError},
	{ErrPathNotAllowed, http.StatusForbidden, apischema.CodePathNotAllowed},
	{ErrInvalidRole, http.StatusBadRequest, apischema.CodeInvalidArgument},
	{ErrInvalidToken, http.StatusBadRequest, apischema.CodeInvalidArgument},
	{ErrTokenExists, http.StatusConflict, apischema.CodeTokenExists},
	{ErrTokenNotFound, http.StatusNotFound, apischema.CodeTokenNotFound},
	{ErrNoTokens, http.StatusNotImplemented, apischema.CodeTokensDisabled},
}

// statusFor returns the HTTP status and code of an engine error.
func statusFor(err error) (int, string) {
	for _, m := range errorMap {
		if errors.Is(err, m.err) {
			return m.status, m.code
		}
	}
	return http.StatusInternalServerError, apischema.CodeInternal
}
