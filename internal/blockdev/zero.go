package blockdev

import "bytes"

// IsZero reports whether p is all zero bytes (true for an empty p). It is
// the one zero check of every copy and backup path that skips zero data.
// Comparing p with itself shifted by one byte lets the runtime's
// vectorized memequal do the work, with no zero buffer to allocate.
func IsZero(p []byte) bool {
	return len(p) == 0 || (p[0] == 0 && bytes.Equal(p[1:], p[:len(p)-1]))
}
