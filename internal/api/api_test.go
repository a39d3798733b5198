package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/job"
)

// newTestAPI runs the API over a real engine on a temp data dir.
func newTestAPI(t *testing.T) (*engine.Engine, *Client, string) {
	t.Helper()
	dir := t.TempDir()
	eng, err := engine.Open(t.Context(), engine.Config{DataDir: dir, NBDAddr: "127.0.0.1:10809"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	info := apischema.Info{Version: "test", DataDir: dir, NBDSocket: filepath.Join(dir, "nbd.sock"), NBDTCP: "127.0.0.1:10809"}
	srv := httptest.NewServer(NewHandler(eng, Options{Info: info, Access: Access{Local: true}}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return eng, c, srv.URL
}

// apiCode returns the status and code of an API error.
func apiCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("got %v (%T), want an *api.Error", err, err)
	}
	return ae.Status, ae.Code
}

func TestVolumeLifecycle(t *testing.T) {
	_, c, _ := newTestAPI(t)
	ctx := t.Context()

	info, err := c.Info(ctx)
	if err != nil || info.Version != "test" || info.NBDTCP != "127.0.0.1:10809" {
		t.Fatalf("info %+v %v", info, err)
	}
	v, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "vm1", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "vm1" || v.Size != 1<<20 || v.Datastore != "default" || len(v.Exports) != 2 {
		t.Fatalf("created %+v", v)
	}
	list, err := c.ListVolumes(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "vm1" {
		t.Fatalf("list %+v %v", list, err)
	}
	v, err = c.SetReadOnly(ctx, "vm1", true)
	if err != nil || !v.ReadOnly {
		t.Fatalf("set read-only %+v %v", v, err)
	}
	v, err = c.GetVolume(ctx, "vm1")
	if err != nil || !v.ReadOnly {
		t.Fatalf("get %+v %v", v, err)
	}
	text, err := c.Attach(ctx, "vm1", "libvirt", true)
	if err != nil || !strings.Contains(text, "<host name='127.0.0.1' port='10809'/>") {
		t.Fatalf("attach %q %v", text, err)
	}
	if err := c.RemoveVolume(ctx, "vm1", false); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetVolume(ctx, "vm1")
	if st, code := apiCode(t, err); st != http.StatusNotFound || code != apischema.CodeVolumeNotFound || !strings.Contains(err.Error(), "vm1") {
		t.Fatalf("get removed: %d %s %v", st, code, err)
	}
}

func TestErrors(t *testing.T) {
	eng, c, base := newTestAPI(t)
	ctx := t.Context()
	if _, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "v", Size: 4096}); err != nil {
		t.Fatal(err)
	}
	_, release, err := eng.OpenExport(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"Duplicate", func() error {
			_, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "v", Size: 4096})
			return err
		}, 409, apischema.CodeVolumeExists},
		{"BadName", func() error {
			_, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "a/b", Size: 4096})
			return err
		}, 400, apischema.CodeInvalidArgument},
		{"NoDatastore", func() error {
			_, err := c.CreateVolume(ctx, apischema.CreateVolumeRequest{Name: "w", Size: 4096, Datastore: "x"})
			return err
		}, 404, apischema.CodeDatastoreNotFound},
		{"InUse", func() error { return c.RemoveVolume(ctx, "v", false) }, 409, apischema.CodeVolumeInUse},
		{"ReadOnlyInUse", func() error { _, err := c.SetReadOnly(ctx, "v", true); return err }, 409, apischema.CodeVolumeInUse},
		{"UnknownJob", func() error { _, err := c.CancelJob(ctx, "99"); return err }, 404, apischema.CodeJobNotFound},
		{"RelativeImport", func() error { _, err := c.Import(ctx, "i", apischema.ImportRequest{Path: "x.img"}); return err }, 400, apischema.CodeInvalidArgument},
		{"AttachKind", func() error { _, err := c.Attach(ctx, "v", "vmware", false); return err }, 400, apischema.CodeInvalidArgument},
		{"DatastoreExists", func() error { _, err := c.AddDatastore(ctx, "default", t.TempDir()); return err }, 409, apischema.CodeDatastoreExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, code := apiCode(t, tc.call())
			if st != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", st, code, tc.status, tc.code)
			}
		})
	}

	raw := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"BadJSON", "POST", "/v1/volumes", "{", 400, apischema.CodeInvalidArgument},
		{"UnknownField", "POST", "/v1/volumes", `{"name":"x","size":1,"colour":"red"}`, 400, apischema.CodeInvalidArgument},
		{"EmptyPatch", "PATCH", "/v1/volumes/v", `{}`, 400, apischema.CodeInvalidArgument},
		{"BadForce", "DELETE", "/v1/volumes/v?force=maybe", "", 400, apischema.CodeInvalidArgument},
		{"NoRoute", "GET", "/v2/volumes", "", 404, apischema.CodeNotFound},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb apischema.ErrorBody
			decodeBody(t, resp, &eb)
			if resp.StatusCode != tc.status || eb.Code != tc.code || eb.Error == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, eb, tc.status, tc.code)
			}
		})
	}
}

func TestImportJob(t *testing.T) {
	_, c, _ := newTestAPI(t)
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(src, []byte(strings.Repeat("data", 2048)), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := c.Import(ctx, "imp", apischema.ImportRequest{Path: src, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	var updates int
	final, err := c.WaitJob(ctx, j.ID, 10*time.Millisecond, func(job.Info) { updates++ })
	if err != nil {
		t.Fatal(err)
	}
	if final.State != job.Done || final.Done != 8192 || final.Total != 8192 || updates == 0 {
		t.Fatalf("final %+v after %d updates", final, updates)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].ID != j.ID || jobs[0].Kind != "import" {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	out := filepath.Join(t.TempDir(), "back.raw")
	j, err = c.Export(ctx, "imp", apischema.ExportRequest{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	if final, err := c.WaitJob(ctx, j.ID, 10*time.Millisecond, nil); err != nil || final.State != job.Done {
		t.Fatalf("export %+v %v", final, err)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != strings.Repeat("data", 2048) {
		t.Fatalf("exported %d bytes, %v", len(got), err)
	}
}

func TestDatastores(t *testing.T) {
	_, c, _ := newTestAPI(t)
	p := filepath.Join(t.TempDir(), "nfs")
	d, err := c.AddDatastore(t.Context(), "nfs", p)
	if err != nil || d.Name != "nfs" || d.Path != p || d.Status != "online" {
		t.Fatalf("add %+v %v", d, err)
	}
	list, err := c.Datastores(t.Context())
	if err != nil || len(list) != 2 || list[0].Name != "default" || list[1].Name != "nfs" || list[1].Total == 0 {
		t.Fatalf("list %+v %v", list, err)
	}
}

func TestUnreachable(t *testing.T) {
	c, err := NewClient("unix:" + filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListVolumes(t.Context())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "extrasphere serve") {
		t.Fatalf("got %v", err)
	}
	for _, bad := range []string{"", "unix:", "tcp:nohost", "ftp://x"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
}
