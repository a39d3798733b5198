package api

import (
	"net/http"
	"regexp"
	"strings"
)

// hostPathRE finds absolute host paths in a message: a "/" at the start or
// after a space, quote, bracket, '=', ':' or ',' (so "file:///x" and
// "socket=/x" are found, "NODE/VOLUME" is not), up to a space, quote,
// bracket, ',' or ';'.
var hostPathRE = regexp.MustCompile(`(?:^|[\s"'(=:\[,])(/[^\s"'<>()\[\],;]*)`)

// redactedPath replaces each host path in messages to non-admins.
const redactedPath = "[path]"

// redactPaths replaces the host paths in msg with redactedPath. A ':' or
// '.' ending a path ("open /x: denied") is kept, as it belongs to the
// sentence.
func redactPaths(msg string) string {
	var b strings.Builder
	last := 0
	for _, m := range hostPathRE.FindAllStringSubmatchIndex(msg, -1) {
		start, end := m[2], m[3]
		for end > start+1 && strings.ContainsRune(".:", rune(msg[end-1])) {
			end--
		}
		b.WriteString(msg[last:start])
		b.WriteString(redactedPath)
		last = end
	}
	b.WriteString(msg[last:])
	return b.String()
}

// errorMessage is the message of err as the request's caller may see it:
// whole for admins and the local door; without host paths for other
// tokens, and without detail for internal errors (the log has it).
func errorMessage(r *http.Request, status int, err error) string {
	c, ok := callerOf(r.Context())
	if !ok || c.role >= RoleAdmin {
		return err.Error()
	}
	if status == http.StatusInternalServerError {
		return "internal error: the daemon's log has the details"
	}
	return redactPaths(err.Error())
}
