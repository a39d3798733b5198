package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "api")
	s, err := OpenTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, tok, err := s.Create("ci", RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) != len(tokenPrefix)+43 || tok.Name != "ci" || tok.Role != RoleRead {
		t.Fatalf("created %q %+v", secret, tok)
	}
	if got, ok := s.Authenticate(secret); !ok || got.Name != "ci" {
		t.Errorf("authenticate: %+v %v", got, ok)
	}
	for _, bad := range []string{"", secret[:len(secret)-1], secret + "A", strings.ToUpper(secret), tokenPrefix + strings.Repeat("A", 43)} {
		if _, ok := s.Authenticate(bad); ok {
			t.Errorf("authenticate(%q) accepted", bad)
		}
	}
	if _, _, err := s.Create("ci", RoleAdmin); !errors.Is(err, ErrTokenExists) {
		t.Errorf("duplicate: %v", err)
	}
	for _, name := range []string{"", "a/b", "-x", strings.Repeat("a", 65)} {
		if _, _, err := s.Create(name, RoleRead); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, _, err := s.Create("x", RoleNone); !errors.Is(err, ErrInvalidRole) {
		t.Errorf("role none: %v", err)
	}

	// The file holds the hash, not the token, with mode 0600; it reloads.
	path := filepath.Join(dir, TokensFile)
	data, err := os.ReadFile(path)
	if err != nil || strings.Contains(string(data), secret) || !strings.Contains(string(data), `"role": "read"`) {
		t.Fatalf("tokens.json (%v): %s", err, data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	re, err := OpenTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := re.Authenticate(secret); !ok || got.Name != "ci" {
		t.Errorf("after reopen: %+v %v", got, ok)
	}
	if err := re.Remove("ci"); err != nil {
		t.Fatal(err)
	}
	if err := re.Remove("ci"); !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	if re2, err := OpenTokens(dir); err != nil || len(re2.List()) != 0 {
		t.Errorf("after remove and reopen: %+v %v", re2.List(), err)
	}
}

func TestTokenStoreBound(t *testing.T) {
	s, err := OpenTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Fill the store in memory (writing 256 files would only test the disk).
	for i := range maxTokens {
		s.tokens = append(s.tokens, tokenRecord{Token: Token{Name: "t" + strings.Repeat("x", i%60) + string(rune('a'+i%26)), Role: RoleRead}})
	}
	if _, _, err := s.Create("one-more", RoleRead); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token %d: %v, want refused", maxTokens+1, err)
	}
}

func TestTokenStoreDamaged(t *testing.T) {
	for name, content := range map[string]string{
		"Garbage":     "not json",
		"Version":     `{"version": 2, "tokens": []}`,
		"BadHash":     `{"version": 1, "tokens": [{"name": "a", "role": "read", "sha256": "xyz"}]}`,
		"BadRole":     `{"version": 1, "tokens": [{"name": "a", "role": "root", "sha256": "` + strings.Repeat("0", 64) + `"}]}`,
		"BadName":     `{"version": 1, "tokens": [{"name": "a/b", "role": "read", "sha256": "` + strings.Repeat("0", 64) + `"}]}`,
		"UpperHexSum": `{"version": 1, "tokens": [{"name": "a", "role": "read", "sha256": "` + strings.Repeat("A", 64) + `"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, TokensFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenTokens(dir)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "token create") {
				t.Errorf("got %v, want an error naming %s and the way out", err, path)
			}
		})
	}
}
