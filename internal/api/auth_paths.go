package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/extrasphere/extrasphere/internal/nbd"
)

// PathPolicy is the set of host directories the TCP door allows in
// requests (`serve --allow-path DIR`). The zero value allows none.
type PathPolicy struct {
	dirs []string // absolute, symlinks resolved, clean
}

// NewPathPolicy resolves each directory (it must exist) to its real path.
func NewPathPolicy(dirs []string) (*PathPolicy, error) {
	p := &PathPolicy{}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("allowed path %s: %w", d, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("allowed path %s: %w", d, err)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("allowed path %s: not a directory", d)
		}
		p.dirs = append(p.dirs, real)
	}
	return p, nil
}

// Dirs returns the allowed directories (real paths).
func (p *PathPolicy) Dirs() []string { return append([]string(nil), p.dirs...) }

// Check resolves path (symlinks and "..", as the kernel would follow them)
// and returns its real form if that lies under an allowed directory; else
// an error wrapping ErrPathNotAllowed. A path that does not exist yet (an
// export or restore target, a new datastore directory) is resolved through
// its nearest existing ancestor. Callers hand the returned real path, not
// the one given, to the engine, so a symlink placed on the way later is
// not followed out of the directory.
func (p *PathPolicy) Check(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("host path %q: %w: give an absolute path", path, ErrPathNotAllowed)
	}
	real, err := resolvePath(path)
	if err != nil {
		return "", fmt.Errorf("host path %s: %w: %v", path, ErrPathNotAllowed, err)
	}
	for _, d := range p.dirs {
		if real == d || strings.HasPrefix(real, d+string(filepath.Separator)) || d == string(filepath.Separator) {
			return real, nil
		}
	}
	allowed := "none"
	if len(p.dirs) > 0 {
		allowed = strings.Join(p.dirs, ", ")
	}
	return "", fmt.Errorf("host path %s (really %s): %w: it is under no directory allowed over TCP (allowed: %s); "+
		"restart the daemon with --allow-path DIR, or use the unix socket", path, real, ErrPathNotAllowed, allowed)
}

// resolvePath returns the real path of an absolute path: EvalSymlinks if it
// exists; else the real path of its parent joined with its last element.
// A dangling symlink is refused (creating "through" it would write where
// it points), and so is a missing path ending in "." or "..".
func resolvePath(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("a symbolic link to a missing target")
	}
	dir, base := filepath.Split(strings.TrimRight(path, string(filepath.Separator)))
	if base == "" || base == "." || base == ".." {
		return "", fmt.Errorf("does not exist")
	}
	realDir, err := resolvePath(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(realDir, base), nil
}

// hostPath checks a host path of a request against the caller's policy
// and replaces it with its real path (see PathPolicy.Check). The local
// door allows any path and leaves it as given; "" is left alone.
func hostPath(r *http.Request, p *string) error {
	c := callerFrom(r.Context())
	if c.local || *p == "" {
		return nil
	}
	real, err := c.paths.Check(*p)
	if err != nil {
		return err
	}
	*p = real
	return nil
}

// mirrorTargetPath checks the host path a mirror target names: the file of
// file:///PATH (replaced by its real path) or the socket of
// nbd+unix:///EXPORT?socket=PATH. Other targets name no host path.
func mirrorTargetPath(r *http.Request, target *string) error {
	if callerFrom(r.Context()).local {
		return nil
	}
	u, err := url.Parse(*target)
	if err != nil {
		return nil // the engine refuses it with its own message
	}
	switch u.Scheme {
	case "file":
		p := u.Path
		if err := hostPath(r, &p); err != nil {
			return err
		}
		*target = (&url.URL{Scheme: "file", Path: p}).String()
	case "nbd+unix":
		t, err := nbd.ParseURI(*target)
		if err != nil {
			return nil // the engine refuses it
		}
		sock := t.Address
		return hostPath(r, &sock)
	}
	return nil
}
