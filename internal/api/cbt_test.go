package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func TestCBTRoutes(t *testing.T) {
	eng, c, base := newTestAPI(t)
	ctx := t.Context()
	if _, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "v", Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	in, err := c.EnableCBT(ctx, "v", "")
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "cbt" || in.MetaContext != "qemu:dirty-bitmap:cbt" || in.Granularity != 64<<10 || in.DirtyBytes != 0 {
		t.Errorf("enable: %+v", in)
	}
	if _, err := c.EnableCBT(ctx, "v", "nightly"); err != nil {
		t.Fatal(err)
	}
	writeVol(t, eng, "v", make([]byte, 4096), 100<<10) // block 1
	list, err := c.CBT(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Bitmaps) != 2 || list.Bitmaps[0].Name != "cbt" || list.Bitmaps[0].DirtyBytes != 64<<10 ||
		list.Bitmaps[1].Name != "nightly" || !strings.HasPrefix(list.URI, "nbd+unix:///v?socket=") {
		t.Errorf("list: %+v", list)
	}
	cl, err := c.ClearCBT(ctx, "v", "cbt")
	if err != nil || cl.DirtyBytes != 0 {
		t.Errorf("clear: %+v %v", cl, err)
	}
	if err := c.RemoveCBT(ctx, "v", "nightly"); err != nil {
		t.Fatal(err)
	}
	if list, err := c.CBT(ctx, "v"); err != nil || len(list.Bitmaps) != 1 {
		t.Errorf("after rm: %+v %v", list, err)
	}

	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"EnableTwice", func() error { _, err := c.EnableCBT(ctx, "v", "cbt"); return err }, http.StatusConflict, apischema.CodeBitmapExists},
		{"BadName", func() error { _, err := c.EnableCBT(ctx, "v", "a:b"); return err }, http.StatusBadRequest, apischema.CodeInvalidArgument},
		{"NoVolume", func() error { _, err := c.CBT(ctx, "nope"); return err }, http.StatusNotFound, apischema.CodeVolumeNotFound},
		{"ClearMissing", func() error { _, err := c.ClearCBT(ctx, "v", "x"); return err }, http.StatusNotFound, apischema.CodeBitmapNotFound},
		{"RemoveMissing", func() error { return c.RemoveCBT(ctx, "v", "x") }, http.StatusNotFound, apischema.CodeBitmapNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code := apiCode(t, tc.call())
			if status != tc.status || code != tc.code {
				t.Errorf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}
	resp, err := http.Post(base+"/v1/volumes/v/cbt", "application/json", strings.NewReader(`{"bitmpa":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: %s", resp.Status)
	}
}
