package main

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func TestCheckNBDInsecure(t *testing.T) {
	tests := []struct {
		addr     string
		insecure bool
		wantErr  bool
	}{
		{"127.0.0.1:10809", true, false},
		{"[::1]:10809", true, false},
		{"localhost:10809", true, false},
		{"127.0.0.2:10809", true, false},
		{"0.0.0.0:10809", true, true},
		{":10809", true, true},
		{"[::]:10809", true, true},
		{"192.0.2.5:10809", true, true},
		{"host1:10809", true, true},
		{"0.0.0.0:10809", false, false}, // TLS: any address
		{"", true, false},               // no TCP listener
	}
	for _, tc := range tests {
		err := checkNBDInsecure(tc.addr, tc.insecure)
		if (err != nil) != tc.wantErr {
			t.Errorf("checkNBDInsecure(%q, %v) = %v, want error %v", tc.addr, tc.insecure, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, errInsecureNotLoopback) {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("checkNBDInsecure(%q): %v is neither errInsecureNotLoopback nor a usage error", tc.addr, err)
			}
		}
	}
}

func TestChownGroup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sock")
	if err := os.WriteFile(p, nil, 0o660); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid() // a group this process may always give its files to
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{strconv.Itoa(gid), g.Name, ""} {
		if err := chownGroup(p, group); err != nil {
			t.Fatalf("chownGroup(%q): %v", group, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := int(fi.Sys().(*syscall.Stat_t).Gid); got != gid {
			t.Errorf("chownGroup(%q): gid %d, want %d", group, got, gid)
		}
	}
	if err := chownGroup(p, "no-such-group-extrasphere"); err == nil {
		t.Error("chownGroup to an unknown group succeeded")
	}
}
