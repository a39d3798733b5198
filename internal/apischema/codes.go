package apischema

// Error codes of the API (the "code" of an ErrorBody), mapped from the
// engine's sentinels by internal/api. They are API values: must not
// change.
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
	CodeMirrorNotFound    = "mirror_not_found"
	CodeMirrorExists      = "mirror_exists"
	CodeNotReplica        = "not_replica"
	CodeSplitBrain        = "split_brain"
	CodePeerError         = "peer_error"
)

// Error codes that both the API and the peer API send. They are wire
// values: must not change.
const (
	CodeNotFound = "not_found" // 404: no such route
	CodeInternal = "internal"  // 500, or a reply without a readable ErrorBody
)

// Error codes of the API's access control. They are API values: must not
// change.
const (
	CodeUnauthorized     = "unauthorized"           // 401: no token, or not a valid one
	CodeForbidden        = "forbidden"              // 403: the token's role may not call the route
	CodeForbiddenOrigin  = "forbidden_origin"       // 403: a cross-site request (foreign Origin)
	CodeUnsupportedMedia = "unsupported_media_type" // 415: a body that is not application/json
	CodePathNotAllowed   = "path_not_allowed"       // 403: a host path outside --allow-path
	CodeTokenExists      = "token_exists"           // 409
	CodeTokenNotFound    = "token_not_found"        // 404
	CodeTokensDisabled   = "tokens_disabled"        // 501: the daemon has no token store
)

// Error codes of the API's NBD client routes (/v1/clients). They are API
// values: must not change.
const (
	CodeClientNotFound = "client_not_found"
	CodeClientExists   = "client_exists"
	CodeNoClientCA     = "no_client_ca"
)

// Error codes of the API's node routes (/v1/node...). They are API values:
// must not change.
const (
	CodeNodeDisabled            = "node_disabled"
	CodeNodeExists              = "node_exists"
	CodeNodeNoIdentity          = "node_no_identity"
	CodeNodeNotPaired           = "node_not_paired"
	CodeNodeBadCode             = "node_bad_code"
	CodeNodeRateLimited         = "node_rate_limited"
	CodeNodeFingerprintMismatch = "node_fingerprint_mismatch"
	CodeNodePeerConflict        = "node_peer_conflict"
	CodeNodeUnreachable         = "node_unreachable"
	CodeNodeRemoteError         = "node_remote_error"
)

// Error codes of the peer API (pairing, and every route a node that is not
// paired calls). The engine's peer routes (PeerReplicas, PeerFailback)
// answer with the API codes above. They are wire values between nodes:
// must not change.
const (
	CodeNotPaired      = "not_paired"      // 403: the caller is not a paired node
	CodeBadCode        = "bad_code"        // 403: a wrong, used or expired pairing code
	CodeRateLimited    = "rate_limited"    // 429: too many pairing attempts
	CodeNoClientCert   = "no_client_cert"  // 401: pairing without a client certificate
	CodePeerConflict   = "peer_conflict"   // 409: another peer has that name
	CodeInvalidRequest = "invalid_request" // 400: a malformed pairing request
	CodeNoIdentity     = "no_identity"     // 503: this node has no identity yet
)
