package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// runCLI runs the CLI in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv(envAPI, "unix:"+filepath.Join(t.TempDir(), "none.sock"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoCommand", nil, "needs a subcommand"},
		{"UnknownCommand", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"UnknownSubcommand", []string{"volume", "frobnicate"}, `unknown command "frobnicate"`},
		{"UnknownFlag", []string{"volume", "list", "--colour"}, "unknown flag: --colour"},
		{"CreateNoName", []string{"volume", "create", "--size", "1G"}, "needs 1 argument"},
		{"CreateNoSize", []string{"volume", "create", "v"}, "--size is required"},
		{"CreateBadSize", []string{"volume", "create", "v", "--size", "lots"}, `size "lots"`},
		{"ImportOneArg", []string{"volume", "import", "v"}, "needs 2 argument"},
		{"SetNothing", []string{"volume", "set", "v"}, "--read-only=true or --read-only=false"},
		{"AttachNoKind", []string{"attach", "v"}, "exactly one of --qemu and --libvirt"},
		{"AttachBothKinds", []string{"attach", "v", "--qemu", "--libvirt"}, "exactly one of --qemu and --libvirt"},
		{"VersionArgs", []string{"version", "x"}, "takes no arguments"},
		{"BadAPI", []string{"volume", "list", "--api", "http:/x"}, "want unix:PATH or tcp:HOST:PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, t.Context(), tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.HasPrefix(stderr, "extrasphere: ") || !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr %q, want it to start with \"extrasphere: \" and contain %q", stderr, tc.want)
			}
			if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
				t.Fatalf("stack trace on stderr: %s", stderr)
			}
		})
	}
}

func TestDaemonUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	code, _, stderr := runCLI(t, t.Context(), "volume", "list", "--api", "unix:"+sock)
	if code != exitError || !strings.Contains(stderr, "cannot reach the extrasphere daemon at unix:"+sock) {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, t.Context(), "version")
	if code != 0 || out != "extrasphere dev\n" {
		t.Fatalf("exit %d out %q", code, out)
	}
	code, out, _ = runCLI(t, t.Context(), "version", "--json")
	if code != 0 || !strings.Contains(out, `"version": "dev"`) {
		t.Fatalf("exit %d out %q", code, out)
	}
}

// startServe runs `extrasphere serve` in-process until the test ends and
// waits for its API socket.
func startServe(t *testing.T, data string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--data", data, "--nbd", ""}, &bytes.Buffer{}, &errb)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errb.String())
		}
	})
	sock := filepath.Join(data, "api.sock")
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before listening", code)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestServeAndCommands(t *testing.T) {
	data := t.TempDir()
	t.Setenv(envData, data)
	t.Setenv(envAPI, "")
	startServe(t, data)
	ctx := t.Context()

	code, out, stderr := runCLI(t, ctx, "volume", "create", "vm1", "--size", "16M")
	if code != 0 || !strings.Contains(out, "created volume vm1 (16.0 MiB) on datastore default") {
		t.Fatalf("create: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, ctx, "volume", "list", "--json")
	var vols []apischema.VolumeInfo
	if code != 0 || json.Unmarshal([]byte(out), &vols) != nil || len(vols) != 1 || vols[0].Size != 16<<20 {
		t.Fatalf("list --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "volume", "show", "vm1")
	if code != 0 || !strings.Contains(out, "nbd+unix:///vm1?socket="+data+"/nbd.sock") {
		t.Fatalf("show: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "attach", "vm1", "--libvirt")
	if code != 0 || !strings.Contains(out, "<host transport='unix' socket='"+data+"/nbd.sock'/>") {
		t.Fatalf("attach: %d %q", code, out)
	}
	code, _, stderr = runCLI(t, ctx, "attach", "vm1", "--qemu", "--tcp")
	if code != exitError || !strings.Contains(stderr, "without an NBD TCP listener") {
		t.Fatalf("attach --tcp without tcp: %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, ctx, "volume", "show", "nope")
	if code != exitError || stderr != "extrasphere: volume nope does not exist (see `extrasphere volume list`)\n" {
		t.Fatalf("show missing: %d %q", code, stderr)
	}

	src := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(src, bytes.Repeat([]byte("abc"), 100_000), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, ctx, "volume", "import", "imp", src, "--format", "raw")
	if code != 0 || !strings.Contains(out, "imported "+src+" into volume imp") || !strings.Contains(stderr, "import imp: done, 100%") {
		t.Fatalf("import: %d %q %q", code, out, stderr)
	}
	dst := filepath.Join(t.TempDir(), "dst.raw")
	code, out, _ = runCLI(t, ctx, "volume", "export", "imp", dst, "--json")
	if code != 0 || !strings.Contains(out, `"state": "done"`) {
		t.Fatalf("export: %d %q", code, out)
	}
	back, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(back[:300_000], bytes.Repeat([]byte("abc"), 100_000)) {
		t.Fatalf("exported content differs (%v)", err)
	}

	code, out, _ = runCLI(t, ctx, "datastore", "add", "second", filepath.Join(t.TempDir(), "ds2"))
	if code != 0 || !strings.Contains(out, "added datastore second") {
		t.Fatalf("datastore add: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "datastore", "list")
	if code != 0 || !strings.Contains(out, "second") || !strings.Contains(out, "default") {
		t.Fatalf("datastore list: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "volume", "set", "vm1", "--read-only=true")
	if code != 0 || out != "volume vm1 is now read-only\n" {
		t.Fatalf("set: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "volume", "rm", "vm1")
	if code != 0 || out != "removed volume vm1\n" {
		t.Fatalf("rm: %d %q", code, out)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"4096", 4096}, {"20G", 20 << 30}, {"20g", 20 << 30}, {"20GiB", 20 << 30}, {"20GB", 20 << 30},
		{"512M", 512 << 20}, {"1.5K", 1536}, {"1T", 1 << 40}, {"100B", 100},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "0", "abc", "1X", "9E", "NaN"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
