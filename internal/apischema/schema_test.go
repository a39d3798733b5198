package apischema

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestErrorBodyWire pins the error body's JSON: the keys, their order and
// that both are always written. Older nodes and scripts parse it.
func TestErrorBodyWire(t *testing.T) {
	for _, tc := range []struct {
		body ErrorBody
		want string
	}{
		{ErrorBody{Error: "volume vm1 not found", Code: CodeVolumeNotFound}, `{"error":"volume vm1 not found","code":"volume_not_found"}`},
		{ErrorBody{}, `{"error":"","code":""}`},
	} {
		got, err := json.Marshal(tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("json of %#v = %s, want %s", tc.body, got, tc.want)
		}
		var back ErrorBody
		if err := json.Unmarshal([]byte(tc.want), &back); err != nil || back != tc.body {
			t.Errorf("decode %s = %#v (%v), want %#v", tc.want, back, err, tc.body)
		}
	}
}

// TestPeerRoutes pins the peer routes: nodes of one cluster call them.
func TestPeerRoutes(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{PeerPair, "/peer/v1/pair"},
		{PeerHello, "/peer/v1/hello"},
		{PeerReplicas, "/peer/v1/replicas"},
		{PeerFailback, "/peer/v1/failback"},
	} {
		if tc.got != tc.want {
			t.Errorf("peer route %q, want %q", tc.got, tc.want)
		}
		if !strings.HasPrefix(tc.got, PeerPrefix) {
			t.Errorf("peer route %q is not under %q", tc.got, PeerPrefix)
		}
	}
}

// TestCodesDistinct: no two codes share a value (a client could not tell
// them apart), and every code is lower snake case.
func TestCodesDistinct(t *testing.T) {
	codes := []string{
		CodeVolumeNotFound,
		CodeVolumeExists,
		CodeVolumeInUse,
		CodeVolumeUnavailable,
		CodeDatastoreNotFound,
		CodeDatastoreExists,
		CodeDatastoreOffline,
		CodeSnapshotNotFound,
		CodeSnapshotExists,
		CodeJobNotFound,
		CodeBitmapNotFound,
		CodeBitmapExists,
		CodeRepoNotFound,
		CodeRepoExists,
		CodeRepoError,
		CodeBackupNotFound,
		CodeInvalidArgument,
		CodeFileExists,
		CodeQemuImgMissing,
		CodeNoTCP,
		CodeNoSpace,
		CodeShuttingDown,
		CodeMirrorNotFound,
		CodeMirrorExists,
		CodeNotReplica,
		CodeSplitBrain,
		CodePeerError,
		CodeNotFound,
		CodeInternal,
		CodeUnauthorized,
		CodeForbidden,
		CodeForbiddenOrigin,
		CodeUnsupportedMedia,
		CodePathNotAllowed,
		CodeTokenExists,
		CodeTokenNotFound,
		CodeTokensDisabled,
		CodeClientNotFound,
		CodeClientExists,
		CodeNoClientCA,
		CodeNodeDisabled,
		CodeNodeExists,
		CodeNodeNoIdentity,
		CodeNodeNotPaired,
		CodeNodeBadCode,
		CodeNodeRateLimited,
		CodeNodeFingerprintMismatch,
		CodeNodePeerConflict,
		CodeNodeUnreachable,
		CodeNodeRemoteError,
		CodeNotPaired,
		CodeBadCode,
		CodeRateLimited,
		CodeNoClientCert,
		CodePeerConflict,
		CodeInvalidRequest,
		CodeNoIdentity,
	}
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := make(map[string]bool)
	for _, c := range codes {
		if seen[c] {
			t.Errorf("code %q is defined twice", c)
		}
		seen[c] = true
		if !snake.MatchString(c) {
			t.Errorf("code %q is not lower snake case", c)
		}
	}
}
