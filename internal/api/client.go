package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/job"
)

// ErrUnreachable: the client could not connect to the daemon.
var ErrUnreachable = errors.New("cannot reach the extrasphere daemon")

// Error is an error response of the API (apischema.Error): match its
// Code.
type Error = apischema.Error

// Client talks to a daemon's API.
type Client struct {
	addr  string // as given, for messages
	base  string // URL prefix, "http://extrasphere" for unix sockets
	hc    *http.Client
	token string // sent as a bearer token; "" sends none
}

// ClientOptions configure a client of the TCP door.
type ClientOptions struct {
	// Token is the bearer token (EXTRASPHERE_TOKEN); "" sends none, which
	// the TCP door refuses (401). Never sent over plain http:// to another
	// host.
	Token string

	// CAPEM is the daemon's API CA certificate ($DATA/api/ca-cert.pem on
	// its host), which the server certificate must chain to. Required for
	// tcp: and https:// addresses: the client never skips the check.
	CAPEM []byte
}

// NewClient returns a client for addr without a token: "unix:/path/api.sock"
// or an http:// URL (tests).
func NewClient(addr string) (*Client, error) { return NewClientWith(addr, ClientOptions{}) }

// NewClientWith returns a client for addr: "unix:/path/api.sock",
// "tcp:host:port" or an https:// URL (HTTPS, checked against o.CAPEM), or
// an http:// URL (tests and loopback proxies).
func NewClientWith(addr string, o ClientOptions) (*Client, error) {
	c := &Client{addr: addr, token: o.Token}
	tlsClient := func() (*http.Client, error) {
		if len(o.CAPEM) == 0 {
			return nil, fmt.Errorf("api address %q: %w: the API over TCP is HTTPS with the daemon's own CA; "+
				"copy DATA/api/%s from the daemon's host and pass --api-ca FILE (or EXTRASPHERE_API_CA)", addr, ErrNoAPICA, CACertFile)
		}
		cfg, err := ClientTLS(o.CAPEM)
		if err != nil {
			return nil, fmt.Errorf("api address %q: %w", addr, err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}, nil
	}
	var err error
	switch {
	case strings.HasPrefix(addr, "unix:"):
		path := strings.TrimPrefix(addr, "unix:")
		if path == "" {
			return nil, fmt.Errorf("api address %q: empty socket path", addr)
		}
		c.base = "http://extrasphere"
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}}
	case strings.HasPrefix(addr, "tcp:"):
		hp := strings.TrimPrefix(addr, "tcp:")
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return nil, fmt.Errorf("api address %q: %w", addr, err)
		}
		c.base = "https://" + hp
		if c.hc, err = tlsClient(); err != nil {
			return nil, err
		}
	case strings.HasPrefix(addr, "https://"):
		c.base = strings.TrimSuffix(addr, "/")
		if c.hc, err = tlsClient(); err != nil {
			return nil, err
		}
	case strings.HasPrefix(addr, "http://"):
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("api address %q: %w", addr, err)
		}
		if o.Token != "" && !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("api address %q: a token is never sent over plain http to another host; use tcp:HOST:PORT (HTTPS)", addr)
		}
		c.base = strings.TrimSuffix(addr, "/")
		c.hc = &http.Client{}
	default:
		return nil, fmt.Errorf("api address %q: want unix:PATH or tcp:HOST:PORT", addr)
	}
	return c, nil
}

// Info returns GET /v1/info.
func (c *Client) Info(ctx context.Context) (apischema.Info, error) {
	var out apischema.Info
	err := c.do(ctx, http.MethodGet, "/v1/info", nil, &out)
	return out, err
}

// ListVolumes returns GET /v1/volumes.
func (c *Client) ListVolumes(ctx context.Context) ([]apischema.VolumeInfo, error) {
	var out []apischema.VolumeInfo
	err := c.do(ctx, http.MethodGet, "/v1/volumes", nil, &out)
	return out, err
}

// GetVolume returns GET /v1/volumes/{name}.
func (c *Client) GetVolume(ctx context.Context, name string) (apischema.VolumeInfo, error) {
	var out apischema.VolumeInfo
	err := c.do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name), nil, &out)
	return out, err
}

// CreateVolume calls POST /v1/volumes.
func (c *Client) CreateVolume(ctx context.Context, req apischema.CreateVolumeRequest) (apischema.VolumeInfo, error) {
	var out apischema.VolumeInfo
	err := c.do(ctx, http.MethodPost, "/v1/volumes", req, &out)
	return out, err
}

// RemoveVolume calls DELETE /v1/volumes/{name}.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	p := "/v1/volumes/" + url.PathEscape(name)
	if force {
		p += "?force=1"
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// SetReadOnly calls PATCH /v1/volumes/{name}.
func (c *Client) SetReadOnly(ctx context.Context, name string, ro bool) (apischema.VolumeInfo, error) {
	var out apischema.VolumeInfo
	err := c.do(ctx, http.MethodPatch, "/v1/volumes/"+url.PathEscape(name), apischema.PatchVolumeRequest{ReadOnly: &ro}, &out)
	return out, err
}

// Import calls POST /v1/volumes/{name}/import and returns the new job.
func (c *Client) Import(ctx context.Context, name string, req apischema.ImportRequest) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/import", req, &out)
	return out, err
}

// Export calls POST /v1/volumes/{name}/export and returns the new job.
func (c *Client) Export(ctx context.Context, name string, req apischema.ExportRequest) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/export", req, &out)
	return out, err
}

// Attach returns GET /v1/volumes/{name}/attach as text.
func (c *Client) Attach(ctx context.Context, name, kind string, tcp bool) (string, error) {
	q := url.Values{"kind": {kind}}
	if tcp {
		q.Set("tcp", "1")
	}
	var out bytes.Buffer
	err := c.do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name)+"/attach?"+q.Encode(), nil, &out)
	return out.String(), err
}

// CreateSnapshot calls POST /v1/snapshots: one snapshot of every volume,
// at one instant.
func (c *Client) CreateSnapshot(ctx context.Context, vols []string, name string) ([]apischema.SnapshotInfo, error) {
	var out []apischema.SnapshotInfo
	err := c.do(ctx, http.MethodPost, "/v1/snapshots", apischema.CreateSnapshotRequest{Volumes: vols, Name: name}, &out)
	return out, err
}

// Snapshots returns GET /v1/volumes/{name}/snapshots.
func (c *Client) Snapshots(ctx context.Context, vol string) ([]apischema.SnapshotInfo, error) {
	var out []apischema.SnapshotInfo
	err := c.do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(vol)+"/snapshots", nil, &out)
	return out, err
}

// RevertSnapshot calls POST /v1/volumes/{name}/snapshots/{snap}/revert.
func (c *Client) RevertSnapshot(ctx context.Context, vol, snap string) (apischema.SnapshotInfo, error) {
	var out apischema.SnapshotInfo
	err := c.do(ctx, http.MethodPost, snapshotPath(vol, snap)+"/revert", nil, &out)
	return out, err
}

// RemoveSnapshot calls DELETE /v1/volumes/{name}/snapshots/{snap} and
// returns the consolidation job.
func (c *Client) RemoveSnapshot(ctx context.Context, vol, snap string) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodDelete, snapshotPath(vol, snap), nil, &out)
	return out, err
}

func snapshotPath(vol, snap string) string {
	return "/v1/volumes/" + url.PathEscape(vol) + "/snapshots/" + url.PathEscape(snap)
}

// Jobs returns GET /v1/jobs.
func (c *Client) Jobs(ctx context.Context) ([]job.Info, error) {
	var out []job.Info
	err := c.do(ctx, http.MethodGet, "/v1/jobs", nil, &out)
	return out, err
}

// Job returns GET /v1/jobs/{id}.
func (c *Client) Job(ctx context.Context, id string) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CancelJob calls DELETE /v1/jobs/{id}.
func (c *Client) CancelJob(ctx context.Context, id string) (job.Info, error) {
	var out job.Info
	err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// WaitJob polls a job until it ends, calling onUpdate with each state
// (also the last). The first polls come quickly (from 5 ms, doubling), so
// a short job is not reported up to interval late; then every interval.
func (c *Client) WaitJob(ctx context.Context, id string, interval time.Duration, onUpdate func(job.Info)) (job.Info, error) {
	wait := min(5*time.Millisecond, interval)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if onUpdate != nil {
			onUpdate(j)
		}
		if j.State != job.Running {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, interval)
		t.Reset(wait)
	}
}

// Datastores returns GET /v1/datastores.
func (c *Client) Datastores(ctx context.Context) ([]apischema.DatastoreInfo, error) {
	var out []apischema.DatastoreInfo
	err := c.do(ctx, http.MethodGet, "/v1/datastores", nil, &out)
	return out, err
}

// AddDatastore calls POST /v1/datastores.
func (c *Client) AddDatastore(ctx context.Context, name, path string) (apischema.DatastoreInfo, error) {
	var out apischema.DatastoreInfo
	err := c.do(ctx, http.MethodPost, "/v1/datastores", apischema.AddDatastoreRequest{Name: name, Path: path}, &out)
	return out, err
}

// do sends one request. out is a pointer to decode JSON into, a
// *bytes.Buffer for text, or nil.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	err := apischema.Call(ctx, c.hc, method, c.base+path, c.token, in, out)
	var te *apischema.TransportError
	if !errors.As(err, &te) {
		return err
	}
	var cv *tls.CertificateVerificationError
	if errors.As(te.Err, &cv) {
		return fmt.Errorf("%w at %s: its certificate is not the one the CA certificate given trusts (%v): "+
			"use DATA/api/%s of that daemon's host as --api-ca", ErrUnreachable, c.addr, cv.Err, CACertFile)
	}
	return fmt.Errorf("%w at %s: %v (is `extrasphere serve` running? check --api or EXTRASPHERE_API)",
		ErrUnreachable, c.addr, te.Err)
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
