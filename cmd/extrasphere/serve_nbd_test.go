package main

import (
	"errors"
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
		{"", true, false},                // no TCP listener
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
