package nbd

import (
	"testing"

	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// rawConn is the naive client of internal/nbdraw, for testing how the
// server answers malformed input.
type rawConn = nbdraw.Conn

// dialRaw connects to s's unix socket and reads the greeting.
func dialRaw(t *testing.T, s *testServer) *rawConn { return nbdraw.Dial(t, "unix", s.sock) }
