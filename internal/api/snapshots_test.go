package api

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/job"
)

// writeVol writes p at off through the volume's export.
func writeVol(t *testing.T, eng *engine.Engine, vol string, p []byte, off int64) {
	t.Helper()
	ex, release, err := eng.OpenExport(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := ex.Device.WriteAt(t.Context(), p, off, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
}

// readVol reads n bytes at off through the volume's export.
func readVol(t *testing.T, eng *engine.Engine, vol string, n int, off int64) []byte {
	t.Helper()
	ex, release, err := eng.OpenExport(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	p := make([]byte, n)
	if err := ex.Device.ReadAt(t.Context(), p, off); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSnapshots(t *testing.T) {
	eng, c, _ := newTestAPI(t)
	ctx := t.Context()
	for _, n := range []string{"a", "b"} {
		if _, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: n, Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	one := bytes.Repeat([]byte{1}, 4096)
	two := bytes.Repeat([]byte{2}, 4096)
	writeVol(t, eng, "a", one, 0)

	got, err := c.CreateSnapshot(ctx, []string{"b", "a"}, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Volume != "a" || got[1].Volume != "b" || got[0].Name != "g1" ||
		!got[0].Created.Equal(got[1].Created) || got[0].Layer == "" {
		t.Fatalf("group snapshot %+v", got)
	}
	auto, err := c.CreateSnapshot(ctx, []string{"a"}, "")
	if err != nil || len(auto) != 1 || !strings.HasPrefix(auto[0].Name, "snap-") {
		t.Fatalf("unnamed snapshot %+v %v", auto, err)
	}
	list, err := c.Snapshots(ctx, "a")
	if err != nil || len(list) != 2 || list[0].Name != "g1" || list[1].Name != auto[0].Name {
		t.Fatalf("list %+v %v", list, err)
	}

	// Remove the newest: a consolidation job.
	j, err := c.RemoveSnapshot(ctx, "a", auto[0].Name)
	if err != nil || j.Kind != chainops.KindConsolidate || j.Volume != "a" {
		t.Fatalf("rm %+v %v", j, err)
	}
	if fin, err := c.WaitJob(ctx, j.ID, 10*time.Millisecond, nil); err != nil || fin.State != job.Done {
		t.Fatalf("consolidate %+v %v", fin, err)
	}

	writeVol(t, eng, "a", two, 0)
	rev, err := c.RevertSnapshot(ctx, "a", "g1")
	if err != nil || rev.Name != "g1" || rev.Volume != "a" || rev.Layer != list[0].Layer {
		t.Fatalf("revert %+v %v", rev, err)
	}
	if got := readVol(t, eng, "a", 4096, 0); !bytes.Equal(got, one) {
		t.Fatalf("after revert a reads %x..., want 01...", got[:8])
	}
	list, err = c.Snapshots(ctx, "a")
	if err != nil || len(list) != 1 || list[0].Name != "g1" {
		t.Fatalf("list after revert %+v %v", list, err)
	}
}

func TestSnapshotErrors(t *testing.T) {
	_, c, base := newTestAPI(t)
	ctx := t.Context()
	for _, n := range []string{"v", "ro"} {
		if _, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: n, Size: 1 << 20, ReadOnly: n == "ro"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"s1", "s2"} {
		if _, err := c.CreateSnapshot(ctx, []string{"v"}, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
		msg    string
	}{
		{"UnknownVolume", func() error { _, err := c.CreateSnapshot(ctx, []string{"v", "nope"}, "x"); return err }, 404, apischema.CodeVolumeNotFound, "nope"},
		{"Duplicate", func() error { _, err := c.CreateSnapshot(ctx, []string{"v"}, "s1"); return err }, 409, apischema.CodeSnapshotExists, "s1"},
		{"BadName", func() error { _, err := c.CreateSnapshot(ctx, []string{"v"}, "a/b"); return err }, 400, apischema.CodeInvalidArgument, "a/b"},
		{"NoVolumes", func() error { _, err := c.CreateSnapshot(ctx, nil, "x"); return err }, 400, apischema.CodeInvalidArgument, "no volume"},
		{"ReadOnly", func() error { _, err := c.CreateSnapshot(ctx, []string{"ro"}, "x"); return err }, 400, apischema.CodeInvalidArgument, "read-only"},
		{"ListUnknown", func() error { _, err := c.Snapshots(ctx, "nope"); return err }, 404, apischema.CodeVolumeNotFound, "nope"},
		{"RevertUnknown", func() error { _, err := c.RevertSnapshot(ctx, "v", "zz"); return err }, 404, apischema.CodeSnapshotNotFound, "zz"},
		{"RmUnknown", func() error { _, err := c.RemoveSnapshot(ctx, "v", "zz"); return err }, 404, apischema.CodeSnapshotNotFound, "zz"},
		{"RmUnknownVolume", func() error { _, err := c.RemoveSnapshot(ctx, "nope", "s1"); return err }, 404, apischema.CodeVolumeNotFound, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st, code := apiCode(t, err)
			if st != tc.status || code != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", st, code, err, tc.status, tc.code, tc.msg)
			}
		})
	}
	// Nothing above changed the snapshots.
	list, err := c.Snapshots(ctx, "v")
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v %v", list, err)
	}
	// An older snapshot goes too: its frozen delta above is merged down.
	j, err := c.RemoveSnapshot(ctx, "v", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.WaitJob(ctx, j.ID, 10*time.Millisecond, nil); err != nil || info.State != job.Done {
		t.Fatalf("rm s1: %+v %v", info, err)
	}
	if list, err = c.Snapshots(ctx, "v"); err != nil || len(list) != 1 || list[0].Name != "s2" {
		t.Fatalf("list after rm s1: %+v %v", list, err)
	}

	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/snapshots", strings.NewReader(`{"volumes":["v"],"label":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb apischema.ErrorBody
	decodeBody(t, resp, &eb)
	if resp.StatusCode != 400 || eb.Code != apischema.CodeInvalidArgument {
		t.Fatalf("unknown field: %d %+v", resp.StatusCode, eb)
	}
}
