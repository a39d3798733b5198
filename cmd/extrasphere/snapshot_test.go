package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/chainops"
	"github.com/extrasphere/extrasphere/internal/job"
)

func TestSnapshotUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"CreateNoVolume", []string{"snapshot", "create", "--name", "x"}, "needs at least 1 VOL argument"},
		{"ListNoVolume", []string{"snapshot", "list"}, "needs 1 argument"},
		{"RevertOneArg", []string{"snapshot", "revert", "v"}, "needs 2 argument"},
		{"RmOneArg", []string{"snapshot", "rm", "v"}, "needs 2 argument"},
		{"SnapshotNoSub", []string{"snapshot"}, "needs a subcommand"},
		{"JobShowNoID", []string{"job", "show"}, "needs 1 argument"},
		{"JobCancelNoID", []string{"job", "cancel"}, "needs 1 argument"},
		{"JobListArgs", []string{"job", "list", "x"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, t.Context(), tc.args...)
			if code != exitUsage || !strings.HasPrefix(stderr, "extrasphere: ") || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d stderr %q, want %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

func TestSnapshotCommands(t *testing.T) {
	data := t.TempDir()
	t.Setenv(envData, data)
	t.Setenv(envAPI, "")
	startServe(t, data)
	ctx := t.Context()
	for _, v := range []string{"a", "b"} {
		if code, _, stderr := runCLI(t, ctx, "volume", "create", v, "--size", "4M"); code != 0 {
			t.Fatalf("create %s: %s", v, stderr)
		}
	}

	code, out, stderr := runCLI(t, ctx, "snapshot", "create", "a", "b", "--name", "g1")
	if got, want := out, "created snapshot g1 of volumes a, b at one instant\n"; code != 0 || got != want {
		t.Fatalf("create group: %d %q %q, want %q", code, got, stderr, want)
	}
	code, out, _ = runCLI(t, ctx, "snapshot", "create", "a", "--name", "s2", "--json")
	var created []apischema.SnapshotInfo
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || len(created) != 1 || created[0].Name != "s2" {
		t.Fatalf("create --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "snapshot", "list", "a")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !regexp.MustCompile(`^NAME +CREATED +LAYER$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^g1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +/\S+/a\.vmdk$`).MatchString(lines[1]) ||
		!strings.HasPrefix(lines[2], "s2 ") {
		t.Fatalf("list: %d\n%s", code, out)
	}

	// Errors: one line, named, exit 1.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"UnknownVolume", []string{"snapshot", "create", "nope"}, "nope"},
		{"Duplicate", []string{"snapshot", "create", "a", "--name", "g1"}, "already has a snapshot g1"},
		{"RmUnknown", []string{"snapshot", "rm", "a", "zz"}, "no snapshot zz"},
		{"RevertUnknown", []string{"snapshot", "revert", "a", "zz"}, "no snapshot zz"},
		{"JobUnknown", []string{"job", "show", "99"}, "99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, ctx, tc.args...)
			if code != exitError || out != "" || !strings.HasPrefix(stderr, "extrasphere: ") ||
				strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d stdout %q stderr %q, want exit 1 and one line with %q", code, out, stderr, tc.want)
			}
		})
	}

	code, out, stderr = runCLI(t, ctx, "snapshot", "rm", "a", "s2")
	if code != 0 || out != "removed snapshot s2 of volume a\n" || !strings.Contains(stderr, "remove snapshot s2 of a: done, ") {
		t.Fatalf("rm: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, ctx, "snapshot", "rm", "b", "g1", "--no-wait", "--json")
	var started job.Info
	if code != 0 || json.Unmarshal([]byte(out), &started) != nil || started.Kind != chainops.KindConsolidate || started.Volume != "b" {
		t.Fatalf("rm --no-wait: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "job", "show", started.ID)
	if code != 0 || !regexp.MustCompile(`(?m)^ID: +`+started.ID+`$`).MatchString(out) || !strings.Contains(out, "consolidate") {
		t.Fatalf("job show: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "job", "list", "--json")
	var jobs []job.Info
	if code != 0 || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 2 || jobs[1].ID != started.ID {
		t.Fatalf("job list --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "job", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^ID +KIND +VOLUME +STATE +PROGRESS +STARTED$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+jobs[0].ID+` +consolidate +a +done +100% `).MatchString(out) {
		t.Fatalf("job list: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "job", "cancel", jobs[0].ID)
	if code != 0 || out != "job "+jobs[0].ID+" (consolidate a) had already ended: done\n" {
		t.Fatalf("job cancel: %d %q", code, out)
	}

	code, out, _ = runCLI(t, ctx, "snapshot", "revert", "a", "g1")
	if code != 0 || out != "reverted volume a to snapshot g1\n" {
		t.Fatalf("revert: %d %q", code, out)
	}
	code, out, _ = runCLI(t, ctx, "snapshot", "list", "a", "--json")
	var snaps []apischema.SnapshotInfo
	if code != 0 || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 1 || snaps[0].Name != "g1" {
		t.Fatalf("list after revert: %d %q", code, out)
	}
}
