package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/replication"
)

// waitMirror polls until vol's mirror is in state want (watchdog bound only).
func waitMirror(t *testing.T, e *Engine, vol string, want mirror.State) apischema.MirrorInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms, err := e.ListMirrors(t.Context(), vol)
		if err != nil {
			t.Fatal(err)
		}
		if ms[0].State == string(want) {
			return ms[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror of %s is %s, want %s (%s)", vol, ms[0].State, want, ms[0].LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A mirror to a file: the first copy, writes through it, pause, resume,
// a restart that resumes with nothing to resend, and removal.
func TestMirrorToFileLifecycle(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e := openEngine(t, dir)
	const size = 4 << 20
	mustCreate(t, e, CreateOptions{Name: "v", Size: size})
	writeThrough(t, e, "v", bytes.Repeat([]byte{7}, 1<<20), 0)
	target := filepath.Join(t.TempDir(), "v.flat")
	if _, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "file://" + target}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, e, "v", mirror.StateInSync)
	writeThrough(t, e, "v", bytes.Repeat([]byte{9}, 4096), 2<<20)
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 7 || got[2<<20] != 9 || int64(len(got)) != size {
		t.Fatalf("replica file holds %d at 0, %d at 2 MiB, %d bytes", got[0], got[2<<20], len(got))
	}

	if _, err := e.PauseMirror(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	writeThrough(t, e, "v", bytes.Repeat([]byte{3}, 4096), 3<<20)
	if got, _ := os.ReadFile(target); got[3<<20] == 3 {
		t.Fatal("a paused mirror sent a write")
	}
	if _, err := e.ResumeMirror(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, e, "v", mirror.StateInSync)
	if got, _ := os.ReadFile(target); got[3<<20] != 3 {
		t.Fatal("resume did not resync the write made while paused")
	}

	// A clean restart: the record brings the mirror back, in sync with
	// nothing to copy.
	e.Close()
	e = openEngine(t, dir)
	defer e.Close()
	in := waitMirror(t, e, "v", mirror.StateInSync)
	if in.BytesCopied != 0 {
		t.Fatalf("after a clean restart the mirror copied %d bytes again", in.BytesCopied)
	}
	if err := e.removeVolume(ctx, "v", true, false); !errors.Is(err, errkind.ErrVolumeInUse) || !strings.Contains(err.Error(), "mirror rm") {
		t.Fatalf("remove of a mirrored volume: %v", err)
	}
	if err := e.RemoveMirror(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ListMirrors(ctx, "v"); !errors.Is(err, errkind.ErrMirrorNotFound) {
		t.Fatalf("after mirror rm: %v", err)
	}
}

// Wrong mirror requests get named errors and change nothing.
func TestMirrorBadInput(t *testing.T) {
	ctx := t.Context()
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	mustCreate(t, e, CreateOptions{Name: "ro", Size: 1 << 20, ReadOnly: true})
	mustCreate(t, e, CreateOptions{Name: "w", Size: 1 << 20})
	f := "file://" + filepath.Join(t.TempDir(), "x.flat")
	if _, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: f}); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "small")
	os.WriteFile(small, []byte("tiny"), 0o600)
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		says string
	}{
		{"NoVolume", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "nope", Target: f})
			return err
		}, errkind.ErrVolumeNotFound, "nope"},
		{"NoTarget", func() error { _, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v"}); return err }, errkind.ErrInvalidArgument, "extrasphere://"},
		{"BadScheme", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "ftp://x/y"})
			return err
		}, errkind.ErrInvalidArgument, "ftp"},
		{"PlainRemote", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: "nbd://10.9.9.9/e"})
			return err
		}, errkind.ErrInvalidArgument, "--insecure"},
		{"Async", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: f, Mode: "async"})
			return err
		}, errkind.ErrInvalidArgument, "sync"},
		{"BadPolicy", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: f, Policy: "pray"})
			return err
		}, errkind.ErrInvalidArgument, "degrade or block"},
		{"Second", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "v", Target: f})
			return err
		}, errkind.ErrMirrorExists, "mirror rm v"},
		{"ReadOnly", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "ro", Target: f})
			return err
		}, errkind.ErrInvalidArgument, "read-only"},
		{"SmallFile", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "w", Target: "file://" + small})
			return err
		}, errkind.ErrInvalidArgument, "is 4 bytes"},
		{"NotPaired", func() error {
			_, err := e.CreateMirror(ctx, apischema.MirrorOptions{Volume: "w", Target: "extrasphere://10.9.9.9:10810/v"})
			return err
		}, errkind.ErrPeer, "node"},
		{"RmNone", func() error { return e.RemoveMirror(ctx, "ro") }, errkind.ErrMirrorNotFound, "ro"},
		{"FailoverNotReplica", func() error { _, err := e.Failover(ctx, "v", false); return err }, errkind.ErrNotReplica, "not a replica"},
		{"FailbackNever", func() error { _, err := e.Failback(ctx, "v"); return err }, errkind.ErrNotReplica, "failover ran"},
		{"PauseNone", func() error { _, err := e.PauseMirror(ctx, "ro"); return err }, errkind.ErrMirrorNotFound, "ro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	if got, _ := os.ReadFile(small); string(got) != "tiny" {
		t.Fatal("a refused mirror changed its target file")
	}
	ms, _ := e.ListMirrors(ctx, "")
	if len(ms) != 1 || ms[0].Volume != "v" {
		t.Fatalf("mirrors after refused requests: %+v", ms)
	}
}

// A mirror whose attach fails leaves nothing behind: no catalog record,
// no dirty log (the bitmap it enabled), and the volume serves as before.
func TestCreateMirrorFailureRollsBack(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(t.Context(), Config{DataDir: dir, NBDSocket: filepath.Join(dir, "nbd.sock"),
		NBDAddr: "0.0.0.0:10809", Failpoints: failpoint.Parse(replication.FailpointMirrorAttach + "=eio")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	target := "file://" + filepath.Join(t.TempDir(), "r.flat")
	if _, err := e.CreateMirror(t.Context(), apischema.MirrorOptions{Volume: "v", Target: target}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("create mirror with attach failing: %v, want EIO", err)
	}
	v := e.volumes["v"]
	if v.cbt.Has(replication.MirrorBitmap) {
		t.Fatal("the failed create left the mirror's dirty log enabled")
	}
	if ms, err := e.cat.Mirrors(); err != nil || len(ms) != 0 {
		t.Fatalf("the failed create left catalog records %+v (%v)", ms, err)
	}
	if v.mirror() != nil {
		t.Fatal("the failed create left a mirror on the volume")
	}
	writeThrough(t, e, "v", bytes.Repeat([]byte{5}, 4096), 0)
}
