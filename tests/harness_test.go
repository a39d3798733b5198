//go:build integration

package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// esBin is the absolute path of the daemon binary under test. It is written once by TestMain before
// any test runs and only read afterwards.
var esBin string

// tools are the real clients the tests drive; scripts/deps.sh installs them.
var tools = []string{
	"qemu-io", "qemu-img", "qemu-storage-daemon", "qemu-system-x86_64",
	"nbdinfo", "nbdcopy", "nbdsh", "fio", "cmp",
}

// cmdTimeout bounds every external command so that a hung client fails its test instead of the
// whole run; it is a watchdog, not a performance threshold.
const cmdTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "tests: missing tools %v: run scripts/deps.sh\n", missing)
		return 1
	}
	// nbdsh is Python: the python3 with libnbd lives in /usr/bin, which another python3 may shadow.
	os.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))

	if bin := os.Getenv("EXTRASPHERE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tests: EXTRASPHERE_BIN %s: %v\n", bin, err)
			return 1
		}
		esBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "extrasphere-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildDaemon(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	esBin = bin
	return m.Run()
}

// buildDaemon builds ./cmd/extrasphere with the checked-device tag into dir.
func buildDaemon(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "extrasphere")
	cmd := exec.Command("go", "build", "-tags", "extrasphere_checked", "-o", bin, "./cmd/extrasphere")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ./cmd/extrasphere in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// repoRoot finds the module root through `go env GOMOD`, falling back to the parent directory.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if gomod := strings.TrimSpace(string(out)); err == nil && gomod != "" && gomod != os.DevNull {
		return filepath.Dir(gomod), nil
	}
	return filepath.Abs("..")
}

// runStatus runs a command and returns its exit status (-1 if it could not run) and its combined
// output. It fails the test only if the command cannot be started or hits cmdTimeout.
func runStatus(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	return runStatusIn(t, nil, name, args...)
}

// runStatusIn is runStatus with stdin.
func runStatusIn(t *testing.T, stdin []byte, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %v:\n%s", name, quoteArgs(args), cmdTimeout, out.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	default:
		t.Fatalf("%s %s: %v", name, quoteArgs(args), err)
		return -1, ""
	}
}

// run runs a command that must succeed and returns its combined output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	code, out := runStatus(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d:\n%s", name, quoteArgs(args), code, out)
	}
	return out
}

// quoteArgs renders args for a failure message so it can be pasted into a shell.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"$&;|<>()*?[]{}\\\t\n") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
