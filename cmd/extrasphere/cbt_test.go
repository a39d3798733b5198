package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func TestCBTUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoSub", []string{"cbt"}, "needs a subcommand"},
		{"EnableNoVolume", []string{"cbt", "enable"}, "needs 1 argument"},
		{"ListNoVolume", []string{"cbt", "list"}, "needs 1 argument"},
		{"ClearOneArg", []string{"cbt", "clear", "v"}, "needs 2 argument"},
		{"RmOneArg", []string{"cbt", "rm", "v"}, "needs 2 argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, t.Context(), tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d stderr %q, want %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

func TestCBTCommands(t *testing.T) {
	data := t.TempDir()
	t.Setenv(envData, data)
	t.Setenv(envAPI, "")
	startServe(t, data)
	ctx := t.Context()
	if code, _, stderr := runCLI(t, ctx, "volume", "create", "v", "--size", "4M"); code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	code, out, stderr := runCLI(t, ctx, "cbt", "enable", "v")
	if want := "enabled bitmap cbt on volume v (NBD meta context qemu:dirty-bitmap:cbt)\n"; code != 0 || out != want {
		t.Fatalf("enable: %d %q %q, want %q", code, out, stderr, want)
	}
	if code, _, stderr := runCLI(t, ctx, "cbt", "enable", "v", "--bitmap", "nightly"); code != 0 {
		t.Fatalf("enable --bitmap: %s", stderr)
	}
	code, out, _ = runCLI(t, ctx, "cbt", "list", "v")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !regexp.MustCompile(`^BITMAP +CHANGED +CREATED +META CONTEXT$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^cbt +0 B +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +qemu:dirty-bitmap:cbt$`).MatchString(lines[1]) ||
		!strings.HasPrefix(lines[2], "nightly ") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, ctx, "cbt", "list", "v", "--json")
	var info apischema.CBTInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || len(info.Bitmaps) != 2 || info.Volume != "v" {
		t.Fatalf("list --json: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, ctx, "cbt", "clear", "v", "cbt"); code != 0 || out != "cleared bitmap cbt of volume v\n" {
		t.Fatalf("clear: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, ctx, "cbt", "rm", "v", "nightly"); code != 0 || out != "removed bitmap nightly of volume v\n" {
		t.Fatalf("rm: %d %q", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"Duplicate", []string{"cbt", "enable", "v"}, "already has a bitmap cbt"},
		{"BadName", []string{"cbt", "enable", "v", "--bitmap", "a b"}, "bitmap name"},
		{"UnknownVolume", []string{"cbt", "list", "nope"}, "nope"},
		{"ClearUnknown", []string{"cbt", "clear", "v", "nightly"}, "no bitmap nightly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, ctx, tc.args...)
			if code != 1 || out != "" || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("exit %d out %q stderr %q, want 1 and %q", code, out, stderr, tc.want)
			}
		})
	}
}
