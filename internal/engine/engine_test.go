package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/nbd"
)

func openEngine(t *testing.T, dataDir string) *Engine {
	t.Helper()
	e, err := Open(t.Context(), Config{DataDir: dataDir, NBDSocket: filepath.Join(dataDir, "nbd.sock"), NBDAddr: "0.0.0.0:10809"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustCreate(t *testing.T, e *Engine, o CreateOptions) apischema.VolumeInfo {
	t.Helper()
	in, err := e.CreateVolume(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// writeThrough writes p at off through the volume's export, as an NBD
// connection would, and flushes.
func writeThrough(t *testing.T, e *Engine, name string, p []byte, off int64) {
	t.Helper()
	ex, release, err := e.OpenExport(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := ex.Device.WriteAt(t.Context(), p, off, 0); err != nil {
		t.Fatal(err)
	}
	if err := ex.Device.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func readThrough(t *testing.T, e *Engine, name string, n int, off int64) []byte {
	t.Helper()
	ex, release, err := e.OpenExport(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	b := make([]byte, n)
	if err := ex.Device.ReadAt(t.Context(), b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCreateListShowRemove(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()

	in := mustCreate(t, e, CreateOptions{Name: "vm1-disk0", Size: 10<<20 + 1})
	if got, want := in.Size, int64(10<<20+512); got != want {
		t.Errorf("size %d, want %d (rounded up to 512)", got, want)
	}
	if in.Datastore != DefaultDatastore || in.Status != StatusOK || in.ReadOnly {
		t.Errorf("info %+v", in)
	}
	if got, want := in.Path, filepath.Join(dir, "datastores", "default", "vm1-disk0", "vm1-disk0.vmdk"); got != want {
		t.Errorf("path %s, want %s", got, want)
	}
	// Listening on 0.0.0.0, the TCP URI names the host as its certificate does.
	host, _ := os.Hostname()
	if got, want := in.Exports, []string{"nbd+unix:///vm1-disk0?socket=" + dir + "/nbd.sock", "nbds://" + host + ":10809/vm1-disk0"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("exports %v, want %v", got, want)
	}
	if in.Allocated != 0 {
		t.Errorf("a new sparse volume allocates %d bytes", in.Allocated)
	}
	mustCreate(t, e, CreateOptions{Name: "a", Size: 4096, Preallocate: true, ReadOnly: true})

	list := e.ListVolumes(t.Context())
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "vm1-disk0" {
		t.Fatalf("list %+v", list)
	}
	if !list[0].ReadOnly || !list[0].Preallocated || list[0].Allocated < 4096 {
		t.Errorf("preallocated read-only volume %+v", list[0])
	}
	if got, want := e.ListExports(t.Context()), []string{"a", "vm1-disk0"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("exports %v, want %v", got, want)
	}

	if err := e.RemoveVolume(t.Context(), "vm1-disk0", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.GetVolume(t.Context(), "vm1-disk0"); !errors.Is(err, errkind.ErrVolumeNotFound) {
		t.Fatalf("get removed: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(in.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volume dir still there: %v", err)
	}
	if _, _, err := e.OpenExport(t.Context(), "vm1-disk0"); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Fatalf("open removed export: %v", err)
	}
}

func TestCreateErrors(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 4096})
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want error
	}{
		{"BadName", CreateOptions{Name: "../x", Size: 4096}, errkind.ErrInvalidArgument},
		{"ZeroSize", CreateOptions{Name: "z", Size: 0}, errkind.ErrInvalidArgument},
		{"Duplicate", CreateOptions{Name: "v", Size: 4096}, errkind.ErrVolumeExists},
		{"NoDatastore", CreateOptions{Name: "w", Size: 4096, Datastore: "nope"}, errkind.ErrDatastoreNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.CreateVolume(t.Context(), tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRemoveInUse(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "busy", Size: 1 << 20})
	_, release, err := e.OpenExport(t.Context(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := e.GetVolume(t.Context(), "busy")
	if in.Connections != 1 {
		t.Fatalf("connections %d, want 1", in.Connections)
	}
	err = e.RemoveVolume(t.Context(), "busy", false)
	if !errors.Is(err, errkind.ErrVolumeInUse) {
		t.Fatalf("remove in use: got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "volume busy") || !strings.Contains(msg, "1 open NBD connection") || !strings.Contains(msg, "--force") {
		t.Fatalf("message %q does not name the volume, the connections and the way out", msg)
	}
	release()
	release() // idempotent
	in, _ = e.GetVolume(t.Context(), "busy")
	if in.Connections != 0 {
		t.Fatalf("connections %d after release, want 0", in.Connections)
	}

	mustCreate(t, e, CreateOptions{Name: "forced", Size: 1 << 20})
	ex, release2, err := e.OpenExport(t.Context(), "forced")
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	if err := e.RemoveVolume(t.Context(), "forced", true); err != nil {
		t.Fatalf("force remove: %v", err)
	}
	if err := ex.Device.ReadAt(t.Context(), make([]byte, 512), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("read after force remove: got %v, want errkind.ErrClosed", err)
	}
}

func TestSetReadOnly(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	in := mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	writeThrough(t, e, "v", bytes.Repeat([]byte{7}, 4096), 0)

	if _, err := e.SetReadOnly(t.Context(), "v", true); err != nil {
		t.Fatal(err)
	}
	desc, err := os.ReadFile(in.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(desc), `ddb.extrasphere.readOnly = "true"`) {
		t.Fatalf("descriptor lacks the read-only key:\n%s", desc)
	}
	ex, release, err := e.OpenExport(t.Context(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if !ex.ReadOnly || !ex.Device.Caps().ReadOnly {
		t.Fatalf("export not read-only: %+v caps %+v", ex, ex.Device.Caps())
	}
	if err := ex.Device.WriteAt(t.Context(), make([]byte, 512), 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("write to read-only: %v", err)
	}
	if _, err := e.SetReadOnly(t.Context(), "v", false); !errors.Is(err, errkind.ErrVolumeInUse) {
		t.Fatalf("set read-only while connected: got %v", err)
	}
	release()
	if _, err := e.SetReadOnly(t.Context(), "v", false); err != nil {
		t.Fatal(err)
	}
	if got := readThrough(t, e, "v", 4096, 0); !bytes.Equal(got, bytes.Repeat([]byte{7}, 4096)) {
		t.Fatal("data lost across read-only changes")
	}
	writeThrough(t, e, "v", []byte(strings.Repeat("x", 512)), 512)
}

func TestRestartRediscoversVolumes(t *testing.T) {
	dir := t.TempDir()
	extra := filepath.Join(t.TempDir(), "fast")
	e := openEngine(t, dir)
	if _, err := e.AddDatastore(t.Context(), "fast", extra); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, CreateOptions{Name: "d0", Size: 2 << 20})
	mustCreate(t, e, CreateOptions{Name: "f0", Size: 3 << 20, Datastore: "fast", ReadOnly: true})
	payload := bytes.Repeat([]byte("extrasphere!"), 1000)[:8192]
	writeThrough(t, e, "d0", payload, 1<<20)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, dir)
	defer e.Close()
	list := e.ListVolumes(t.Context())
	if len(list) != 2 {
		t.Fatalf("after restart: %+v", list)
	}
	if v := list[0]; v.Name != "d0" || v.Size != 2<<20 || v.Datastore != "default" || v.ReadOnly || v.Status != StatusOK {
		t.Errorf("d0 after restart %+v", v)
	}
	if v := list[1]; v.Name != "f0" || v.Size != 3<<20 || v.Datastore != "fast" || !v.ReadOnly || v.Status != StatusOK {
		t.Errorf("f0 after restart %+v", v)
	}
	if got := readThrough(t, e, "d0", len(payload), 1<<20); !bytes.Equal(got, payload) {
		t.Fatal("data not back after restart")
	}
	ds := e.ListDatastores(t.Context())
	if len(ds) != 2 || ds[0].Name != "default" || ds[1].Name != "fast" || ds[1].Volumes != 1 || ds[1].Status != DatastoreOnline || ds[1].Free == 0 {
		t.Fatalf("datastores %+v", ds)
	}
}

func TestCorruptVolumeDoesNotStopOthers(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	mustCreate(t, e, CreateOptions{Name: "ok", Size: 1 << 20})
	bad := mustCreate(t, e, CreateOptions{Name: "broken", Size: 1 << 20})
	e.Close()
	if err := os.WriteFile(bad.Path, []byte("not a descriptor\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, dir)
	defer e.Close()
	if got := e.ListExports(t.Context()); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("exports %v, want [ok]", got)
	}
	in, err := e.GetVolume(t.Context(), "broken")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != StatusError || !strings.Contains(in.Error, "volume broken") {
		t.Fatalf("broken volume info %+v", in)
	}
	ds := e.ListDatastores(t.Context())
	if len(ds[0].Problems) != 1 || !strings.Contains(ds[0].Problems[0], "broken") {
		t.Fatalf("datastore problems %v", ds[0].Problems)
	}
	if _, _, err := e.OpenExport(t.Context(), "broken"); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Fatalf("open broken export: %v", err)
	}
	// The operator can remove it.
	if err := e.RemoveVolume(t.Context(), "broken", false); err != nil {
		t.Fatal(err)
	}
}

func TestAddDatastore(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	p := filepath.Join(t.TempDir(), "ds1")
	in, err := e.AddDatastore(t.Context(), "ds1", p)
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != DatastoreOnline || in.UUID == "" {
		t.Fatalf("info %+v", in)
	}
	if _, err := os.Stat(filepath.Join(p, "extrasphere-datastore.json")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, CreateOptions{Name: "onds1", Size: 1 << 20, Datastore: "ds1"})

	if _, err := e.AddDatastore(t.Context(), "ds1", filepath.Join(t.TempDir(), "x")); !errors.Is(err, errkind.ErrDatastoreExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := e.AddDatastore(t.Context(), "ds2", p); !errors.Is(err, errkind.ErrDatastoreExists) {
		t.Errorf("duplicate path: %v", err)
	}
	if _, err := e.AddDatastore(t.Context(), "rel", "relative/path"); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("relative path: %v", err)
	}

	// A second daemon adopts the datastore with its volumes, under the
	// marker's name only.
	e2 := openEngine(t, t.TempDir())
	defer e2.Close()
	if _, err := e2.AddDatastore(t.Context(), "renamed", p); !errors.Is(err, errkind.ErrInvalidArgument) || !strings.Contains(err.Error(), `add it as "ds1"`) {
		t.Fatalf("adopt under another name: %v", err)
	}
	mustCreate(t, e2, CreateOptions{Name: "onds1", Size: 4096})
	if _, err := e2.AddDatastore(t.Context(), "ds1", p); !errors.Is(err, errkind.ErrVolumeExists) {
		t.Fatalf("adopt with clashing volume: %v", err)
	}
	if err := e2.RemoveVolume(t.Context(), "onds1", false); err != nil {
		t.Fatal(err)
	}
	e.Close() // release the volume's files to the second daemon
	if _, err := e2.AddDatastore(t.Context(), "ds1", p); err != nil {
		t.Fatal(err)
	}
	in2, err := e2.GetVolume(t.Context(), "onds1")
	if err != nil || in2.Datastore != "ds1" || in2.Size != 1<<20 {
		t.Fatalf("adopted volume %+v %v", in2, err)
	}
}

func TestAttach(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "vm1", Size: 4096})
	sock := filepath.Join(dir, "nbd.sock")

	q, err := e.Attach(t.Context(), "vm1", apischema.AttachQEMU, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `-blockdev '{"driver":"nbd","node-name":"vm1","server":{"type":"unix","path":"` + sock + `"},"export":"vm1","reconnect-delay":30}' -device virtio-blk-pci,drive=vm1`
	if first := strings.SplitN(q, "\n", 2)[0]; first != want {
		t.Errorf("qemu line\n got %s\nwant %s", first, want)
	}
	if !strings.Contains(q, "-drive 'driver=nbd,server.type=unix,server.path="+sock+",export=vm1,reconnect-delay=30,if=virtio'") {
		t.Errorf("no -drive alternative in %s", q)
	}
	host, _ := os.Hostname() // the engine listens on 0.0.0.0: the host's name, as its certificate says
	qt, _ := e.Attach(t.Context(), "vm1", apischema.AttachQEMU, true)
	if !strings.Contains(qt, `"server":{"type":"inet","host":"`+host+`","port":"10809"}`) {
		t.Errorf("tcp qemu %s", qt)
	}
	x, _ := e.Attach(t.Context(), "vm1", apischema.AttachLibvirt, false)
	for _, s := range []string{"<disk type='network' device='disk'>", "<driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>",
		"<source protocol='nbd' name='vm1'>", "<host transport='unix' socket='" + sock + "'/>", "<reconnect delay='30'/>", "bus='virtio'"} {
		if !strings.Contains(x, s) {
			t.Errorf("libvirt xml lacks %s:\n%s", s, x)
		}
	}
	xt, _ := e.Attach(t.Context(), "vm1", apischema.AttachLibvirt, true)
	if !strings.Contains(xt, "<host name='"+host+"' port='10809'/>") {
		t.Errorf("tcp libvirt %s", xt)
	}
	if _, err := e.Attach(t.Context(), "nope", apischema.AttachQEMU, false); !errors.Is(err, errkind.ErrVolumeNotFound) {
		t.Errorf("attach unknown: %v", err)
	}
	if _, err := e.Attach(t.Context(), "vm1", "vmware", false); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("attach of an unknown kind: %v, want errkind.ErrInvalidArgument", err)
	}
}

// A read-only change whose flush fails changes nothing: the volume keeps
// its stack and the layers under it (they were lost before, and the next
// pivot or mirror attach built on nothing).
func TestSetReadOnlyFlushFailureKeepsStack(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(t.Context(), Config{DataDir: dir, NBDSocket: filepath.Join(dir, "nbd.sock"),
		NBDAddr: "0.0.0.0:10809", Failpoints: failpoint.Parse(flat.FailpointDataSync + "=eio")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	e.mu.Lock()
	before := e.volumes["v"].layers
	e.mu.Unlock()
	if _, err := e.SetReadOnly(t.Context(), "v", true); !errors.Is(err, syscall.EIO) {
		t.Fatalf("set read-only with fdatasync failing: %v, want EIO", err)
	}
	e.mu.Lock()
	v := e.volumes["v"]
	dev, layers, verr := v.dev, v.layers, v.err
	e.mu.Unlock()
	if dev == nil || layers != before || verr != nil {
		t.Fatalf("after the failed change: dev %v, layers %v (before %v), err %v", dev, layers, before, verr)
	}
	if got := readThrough(t, e, "v", 512, 0); len(got) != 512 {
		t.Fatal("the volume no longer reads")
	}
}
