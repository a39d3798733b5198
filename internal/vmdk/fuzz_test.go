package vmdk

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics and that every descriptor it
// accepts survives Marshal -> Parse unchanged. Seeds live in
// testdata/fuzz/FuzzParse (qemu-img and VMware descriptors, a zero-padded
// embedded one, and broken ones).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		text := d.Marshal()
		again, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(Marshal(d)) = %v\ntext:\n%s", err, text)
		}
		if !reflect.DeepEqual(again, d) {
			t.Fatalf("round trip changed the descriptor:\n got %+v\nwant %+v", again, d)
		}
		if !bytes.Equal(again.Marshal(), text) {
			t.Fatalf("Marshal is not stable")
		}
	})
}
