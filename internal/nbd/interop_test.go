package nbd

import (
	"strings"
	"testing"
)

// These tests drive the server with the real clients users run.

func TestQemuIOPatterns(t *testing.T) {
	s := startServer(t)
	for _, uri := range []string{s.uri("disk"), "nbd://" + s.tcp + "/disk"} {
		out := run(t, "qemu-io", "-f", "raw",
			"-c", "write -P 0xab 0 1M",
			"-c", "write -P 0xcd 1048577 4097", // unaligned
			"-c", "write -P 0xef 67108863 1", // the last byte
			"-c", "read -P 0xab 0 1M",
			"-c", "read -P 0xcd 1048577 4097",
			"-c", "read -P 0xef 67108863 1",
			"-c", "write -z 2M 1M", "-c", "read -P 0 2M 1M",
			"-c", "write -P 0x11 4M 1M", "-c", "discard 4M 1M",
			"-c", "write -z -f 8M 64k", "-c", "read -P 0 8M 64k",
			"-c", "flush", uri)
		if strings.Contains(out, "failed") {
			t.Fatalf("qemu-io on %s:\n%s", uri, out)
		}
	}
}

func TestNbdinfoCan(t *testing.T) {
	s := startServer(t)
	for _, c := range []string{"flush", "fua", "trim", "zero", "fast-zero", "multi-conn", "structured-reply", "cache", "df"} {
		if code, out := runStatus(t, "nbdinfo", "--can", c, s.uri("disk")); code != 0 {
			t.Errorf("nbdinfo --can %s: exit %d %s", c, code, out)
		}
	}
	if code, _ := runStatus(t, "nbdinfo", "--is", "read-only", s.uri("ro")); code != 0 {
		t.Errorf("ro export is not read-only")
	}
	if code, _ := runStatus(t, "nbdinfo", "--is", "read-only", s.uri("disk")); code != 2 {
		t.Errorf("disk export is read-only")
	}
	out := run(t, "nbdinfo", "--list", "nbd+unix://?socket="+s.sock)
	for _, want := range []string{"export=\"disk\"", "export=\"ro\"", "test disk"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo --list lacks %s:\n%s", want, out)
		}
	}
}
