package api

import (
	"errors"
	"net/http"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/engine"
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
