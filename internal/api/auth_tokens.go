package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/fsx"
)

// Bearer tokens of the TCP door, kept in $DATA/api/tokens.json
// (docs/FORMATS.md):
//
//	{"version": 1, "tokens": [{"name", "role", "sha256", "created"}]}
//
// mode 0600, replaced atomically (temp, fsync, rename, fsync directory).
// Only the SHA-256 of each token is stored: a token is 256 random bits,
// so a fast hash is enough (nobody can search that space), and the file
// leaks nothing usable. A token is "es1_" and the unpadded base64url of
// its 32 bytes: the prefix lets secret scanners find leaked ones.

// TokensFile is the token file's name in the API directory. Part of the
// on-disk format: must not change.
const TokensFile = "tokens.json"

// tokensVersion is the token file's format version. Must not change.
const tokensVersion = 1

// tokenPrefix starts every token; tokenBytes is its entropy (256 bits,
// the house rule for secrets).
const (
	tokenPrefix = "es1_"
	tokenBytes  = 32
)

// maxTokens bounds the token file: every request's token is compared with
// each stored hash, so the set must stay small; an installation needs a
// handful (one per admin, tool or Prometheus).
const maxTokens = 256

// maxTokensFile bounds what is read of the token file (maxTokens records
// are far below it).
const maxTokensFile = 1 << 20

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Token describes a token (never its secret).
type Token struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
}

// tokenRecord is a token as stored.
type tokenRecord struct {
	Token
	SHA256 string `json:"sha256"` // lowercase hex of SHA-256(token)
	hash   []byte // decoded SHA256
}

type tokensFile struct {
	Version int           `json:"version"`
	Tokens  []tokenRecord `json:"tokens"`
}

// TokenStore is the set of tokens. Its methods are safe for concurrent
// use.
type TokenStore struct {
	path string

	mu     sync.Mutex // guards tokens and the file (writes are serialised)
	tokens []tokenRecord
}

// OpenTokens opens the token file in dir (created with mode 0700 if
// absent); a missing file is an empty store, a damaged one an error naming
// it.
func OpenTokens(dir string) (*TokenStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open tokens: %w", err)
	}
	s := &TokenStore{path: filepath.Join(dir, TokensFile)}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open tokens: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, maxTokensFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	var tf tokensFile
	if err := json.Unmarshal(data, &tf); err != nil {
		return nil, tokensDamaged(s.path, err)
	}
	if tf.Version != tokensVersion {
		return nil, tokensDamaged(s.path, fmt.Errorf("version %d, this build reads %d", tf.Version, tokensVersion))
	}
	for i := range tf.Tokens {
		if err := tf.Tokens[i].validate(); err != nil {
			return nil, tokensDamaged(s.path, err)
		}
	}
	s.tokens = tf.Tokens
	return s, nil
}

func tokensDamaged(path string, why error) error {
	return fmt.Errorf("token file %s is damaged (%v): restore it from a backup, or move it away and make new tokens "+
		"with `extrasphere token create` (every remote client then needs its new token)", path, why)
}

func (t *tokenRecord) validate() error {
	if !tokenNameRE.MatchString(t.Name) {
		return fmt.Errorf("token name %q", t.Name)
	}
	if _, ok := roleNames[t.Role]; !ok {
		return fmt.Errorf("token %s: role %v", t.Name, t.Role)
	}
	h, err := hex.DecodeString(t.SHA256)
	if err != nil || len(h) != sha256.Size || strings.ToLower(t.SHA256) != t.SHA256 {
		return fmt.Errorf("token %s: sha256 %q is not 64 lowercase hex digits", t.Name, t.SHA256)
	}
	t.hash = h
	return nil
}

// Create makes a token named name with role and returns its secret, the
// only time it is known.
func (s *TokenStore) Create(name string, role Role) (string, Token, error) {
	if !tokenNameRE.MatchString(name) {
		return "", Token{}, fmt.Errorf("token name %q: %w: use letters, digits, '.', '-' and '_' (at most 64)", name, ErrInvalidToken)
	}
	if _, ok := roleNames[role]; !ok {
		return "", Token{}, fmt.Errorf("token %s: %w: %v", name, ErrInvalidRole, role)
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", Token{}, fmt.Errorf("create token %s: %w", name, err)
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	rec := tokenRecord{Token: Token{Name: name, Role: role, Created: time.Now().UTC().Truncate(time.Second)},
		SHA256: hex.EncodeToString(sum[:]), hash: sum[:]}

	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.tokens, func(t tokenRecord) bool { return t.Name == name }) {
		return "", Token{}, fmt.Errorf("token %s: %w (remove it first with `extrasphere token rm %s`)", name, ErrTokenExists, name)
	}
	if len(s.tokens) >= maxTokens {
		return "", Token{}, fmt.Errorf("token %s: %w: already %d tokens; remove unused ones", name, ErrInvalidToken, maxTokens)
	}
	next := append(slices.Clip(s.tokens), rec)
	if err := s.write(next); err != nil {
		return "", Token{}, fmt.Errorf("create token %s: %w", name, err)
	}
	s.tokens = next
	return secret, rec.Token, nil
}

// List returns the tokens, sorted by name.
func (s *TokenStore) List() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		out = append(out, t.Token)
	}
	slices.SortFunc(out, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Remove deletes a token; requests with it fail from now on.
func (s *TokenStore) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.tokens, func(t tokenRecord) bool { return t.Name == name })
	if i < 0 {
		return fmt.Errorf("token %s: %w (see `extrasphere token list`)", name, ErrTokenNotFound)
	}
	next := slices.Delete(slices.Clone(s.tokens), i, i+1)
	if err := s.write(next); err != nil {
		return fmt.Errorf("remove token %s: %w", name, err)
	}
	s.tokens = next
	return nil
}

// Authenticate returns the token whose secret is secret. Every stored
// hash is compared, each in constant time, so the time taken does not
// tell which token (if any) matched.
func (s *TokenStore) Authenticate(secret string) (Token, bool) {
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) != len(tokenPrefix)+base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return Token{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	var found Token
	ok := false
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.hash) == 1 {
			found, ok = t.Token, true
		}
	}
	return found, ok
}

// write replaces the token file with tokens; s.mu is held.
func (s *TokenStore) write(tokens []tokenRecord) error {
	if tokens == nil {
		tokens = []tokenRecord{}
	}
	data, err := json.MarshalIndent(tokensFile{Version: tokensVersion, Tokens: tokens}, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFileAtomic(s.path, append(data, '\n'), 0o600)
}

// readLimited reads all of r, failing if it holds more than limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("more than the %d bytes a valid file has", limit)
	}
	return data, nil
}
