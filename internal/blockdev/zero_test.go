package blockdev

import "testing"

func TestIsZero(t *testing.T) {
	if !IsZero(nil) || !IsZero([]byte{}) || !IsZero([]byte{0}) || !IsZero(make([]byte, 4097)) {
		t.Fatal("IsZero of zeros is false")
	}
	// A non-zero byte at every position of buffers around the vector
	// widths, the first and last included.
	for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 4096, 4097} {
		for i := range n {
			p := make([]byte, n)
			p[i] = 0x80
			if IsZero(p) {
				t.Fatalf("IsZero of %d bytes with byte %d set is true", n, i)
			}
		}
	}
}
