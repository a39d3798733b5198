package node

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCode(t *testing.T) {
	hex := strings.Repeat("0a", 32)
	sec := strings.Repeat("A", 25) + "Q"
	for _, tc := range []struct {
		name, code, fp, secret string
	}{
		{"Plain", hex + "-" + sec, "SHA256:" + hex, sec},
		{"Case", strings.ToUpper(hex) + "-" + strings.ToLower(sec), "SHA256:" + hex, sec},
		{"Space", "  " + hex + "-" + sec + "\n", "SHA256:" + hex, sec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, secret, err := ParseCode(tc.code)
			if err != nil || fp != tc.fp || secret != tc.secret {
				t.Errorf("ParseCode(%q) = %q %q %v, want %q %q", tc.code, fp, secret, err, tc.fp, tc.secret)
			}
		})
	}
	for _, bad := range []string{"", "-", hex, hex + "-", "-" + sec, hex[2:] + "-" + sec, hex + "-" + sec[1:],
		hex + "-" + sec + "A", "zz" + hex[2:] + "-" + sec, hex + "-" + sec[:25] + "1", "SHA256:" + hex + "-" + sec} {
		if _, _, err := ParseCode(bad); !errors.Is(err, ErrBadCode) {
			t.Errorf("ParseCode(%q): got %v, want ErrBadCode", bad, err)
		}
	}
}

func FuzzParseCode(f *testing.F) {
	f.Add(strings.Repeat("0a", 32) + "-" + strings.Repeat("A", 26))
	f.Add("x-y")
	f.Fuzz(func(t *testing.T, code string) {
		fp, secret, err := ParseCode(code)
		if err != nil {
			return
		}
		if !validFingerprint(fp) || checkSecret(secret) != nil {
			t.Fatalf("ParseCode(%q) accepted %q %q", code, fp, secret)
		}
	})
}
