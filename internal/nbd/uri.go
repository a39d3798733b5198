package nbd

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadURI: an NBD URI that shared/ref/nbd-uri.md does not allow, or uses
// a feature this client lacks.
var ErrBadURI = errors.New("bad NBD URI")

// Target is a parsed NBD URI.
type Target struct {
	Network string // "unix" or "tcp"
	Address string // socket path or host:port
	Export  string
	TLS     bool
}

// ParseURI parses nbd://, nbds://, nbd+unix:// and nbds+unix:// URIs.
func ParseURI(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("%q: %w: %w", s, ErrBadURI, err)
	}
	var t Target
	switch u.Scheme {
	case "nbd", "nbds":
		t.Network = "tcp"
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "localhost"
		}
		if port == "" {
			port = "10809"
		}
		t.Address = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if strings.Contains(t.Address, ":") {
			t.Address = "[" + t.Address + "]"
		}
		t.Address += ":" + port
	case "nbd+unix", "nbds+unix":
		t.Network = "unix"
		if u.Host != "" {
			return Target{}, fmt.Errorf("%q: a unix URI has no host: %w", s, ErrBadURI)
		}
		t.Address = u.Query().Get("socket")
		if t.Address == "" {
			return Target{}, fmt.Errorf("%q: missing ?socket=: %w", s, ErrBadURI)
		}
	default:
		return Target{}, fmt.Errorf("%q: scheme %q: %w", s, u.Scheme, ErrBadURI)
	}
	t.TLS = strings.HasPrefix(u.Scheme, "nbds")
	t.Export = strings.TrimPrefix(u.Path, "/")
	return t, nil
}
