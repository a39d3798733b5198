package replication

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/mirror"
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

// The API's mirror states and policies are internal/mirror's values: a
// client (the CLI waits for apischema.MirrorInSync) matches what the
// engine reports.
func TestMirrorWireValues(t *testing.T) {
	for api, m := range map[string]string{
		apischema.MirrorSyncing: string(mirror.StateSyncing), apischema.MirrorInSync: string(mirror.StateInSync),
		apischema.MirrorDegraded: string(mirror.StateDegraded), apischema.MirrorResyncing: string(mirror.StateResyncing),
		apischema.MirrorPaused: string(mirror.StatePaused), apischema.MirrorRefused: string(mirror.StateRefused),
		apischema.PolicyDegrade: string(mirror.Degrade), apischema.PolicyBlock: string(mirror.Block),
	} {
		if api != m {
			t.Errorf("apischema has %q where internal/mirror has %q", api, m)
		}
	}
}

// apischema.MirrorStatus is mapped from mirror.Status by hand (its State
// and Policy are plain strings on the wire), so a field added to the
// mirror's status must be added to the API's too: every JSON key of one
// is a key of the other, and mirrorStatus fills it.
func TestMirrorStatusKeepsEveryField(t *testing.T) {
	keys := func(typ reflect.Type) []string {
		var out []string
		for i := range typ.NumField() {
			k, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	in, api := keys(reflect.TypeFor[mirror.Status]()), keys(reflect.TypeFor[apischema.MirrorStatus]())
	if !slices.Equal(in, api) {
		t.Fatalf("mirror.Status keys %v, apischema.MirrorStatus keys %v", in, api)
	}
	// Every field set in the source reaches the API value.
	s := mirror.Status{State: mirror.StateDegraded, Policy: mirror.Block, Connected: true, BytesToSync: 1,
		BytesSent: 2, BytesCopied: 3, Since: time.Unix(4, 0), LastError: "e", LastErrorAt: time.Unix(5, 0)}
	got := reflect.ValueOf(mirrorStatus(s))
	for i := range got.NumField() {
		if got.Field(i).IsZero() {
			t.Errorf("mirrorStatus leaves %s empty", got.Type().Field(i).Name)
		}
	}
}
