package engine

import (
	"encoding/json"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/cbt"
)

// TestFailbackResponseWire pins the JSON of apischema.FailbackResponse: it crosses
// the wire between nodes of possibly different versions, so the range
// field names ("Off", "Len") and the response keys must never change.
func TestFailbackResponseWire(t *testing.T) {
	const want = `{"dirty":[{"Off":0,"Len":65536},{"Off":1048576,"Len":4096}],"nbd_port":"10809"}`
	var resp apischema.FailbackResponse
	if err := json.Unmarshal([]byte(want), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Dirty) != 2 || resp.Dirty[1].Off != 1<<20 || resp.Dirty[1].Len != 4096 || resp.NBDPort != "10809" {
		t.Fatalf("decoded %+v", resp)
	}
	got, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("wire format changed:\n got %s\nwant %s", got, want)
	}
}

// TestFailbackResponseCleanWire: a clean mirror bitmap goes on the wire as
// "dirty":[], never null, as it always did.
func TestFailbackResponseCleanWire(t *testing.T) {
	st, err := cbt.Fresh(cbt.Options{Dir: t.TempDir(), Volume: "v", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Enable(MirrorBitmap, now()); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(apischema.FailbackResponse{Dirty: (&dirtyLog{st: st}).Ranges(), NBDPort: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"dirty":[],"nbd_port":"1"}`; string(got) != want {
		t.Fatalf("wire format changed:\n got %s\nwant %s", got, want)
	}
}
