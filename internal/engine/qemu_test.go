package engine

import (
	"net"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/nbd"
)

// serveNBD runs the real NBD server for e on its unix socket.
func serveNBD(t *testing.T, e *Engine) {
	t.Helper()
	ln, err := net.Listen("unix", e.cfg.NBDSocket)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(e, nbd.Options{})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestImportExportQcow2 goes through qemu-img both ways: a qcow2 image
// with a pattern is imported (format detected), exported back to qcow2
// and compared with qemu-img compare.
func TestImportExportQcow2(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	serveNBD(t, e)

	tmp := t.TempDir()
	src := filepath.Join(tmp, "src.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", src, "5M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", "-c", "write -P 0x5c 3M 64k", src)

	ji, err := e.Import(t.Context(), "q", ImportOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, e, ji.ID); done.State != job.Done {
		t.Fatalf("import job %+v", done)
	}
	in, err := e.GetVolume(t.Context(), "q")
	if err != nil {
		t.Fatal(err)
	}
	if in.Size != 5<<20 {
		t.Fatalf("size %d, want the virtual size 5 MiB", in.Size)
	}
	run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, in.FlatPath)

	out := filepath.Join(tmp, "out.qcow2")
	ji, err = e.Export(t.Context(), "q", ExportOptions{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, e, ji.ID); done.State != job.Done || done.Done != done.Total {
		t.Fatalf("export job %+v", done)
	}
	run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", src, out)
}

// TestImportFailureRemovesVolume: a qemu-img conversion that fails leaves
// no volume behind and reports the job as failed.
func TestImportFailureRemovesVolume(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	// No NBD server listens: qemu-img cannot reach the target.
	src := filepath.Join(t.TempDir(), "src.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", src, "1M")
	ji, err := e.Import(t.Context(), "f", ImportOptions{Path: src, Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, e, ji.ID)
	if done.State != job.Failed || done.Error == "" {
		t.Fatalf("job %+v, want failed", done)
	}
	if _, err := e.GetVolume(t.Context(), "f"); err == nil {
		t.Fatal("failed import left its volume")
	}
}
