package s3

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config says where a repository lives on an S3-compatible server.
type Config struct {
	// Endpoint is "host:port" or a URL "http://host:port" /
	// "https://host:port" (no path). A URL's scheme decides TLS; a bare
	// host:port uses HTTPS unless Insecure is set.
	Endpoint string
	// Bucket must exist at Open (CreateBucket makes it).
	Bucket string
	// Prefix is the "directory" inside the bucket that holds the
	// repository; "" puts it at the bucket's root. Leading and trailing
	// slashes are ignored.
	Prefix string
	// AccessKey and SecretKey sign the requests. When both are empty they
	// come from the environment: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set).
	AccessKey, SecretKey string
	// Region is the bucket's region; "" lets the client discover it
	// (S3-compatible servers answer "us-east-1").
	Region string
	// Insecure selects plain HTTP for a bare host:port endpoint.
	Insecure bool
	// CACertFile, if set, is a PEM file of extra CA certificates trusted
	// for the endpoint's TLS certificate (a private CA).
	CACertFile string

	// Timeout bounds every operation, retries included, so a dead or
	// stalled server makes calls fail instead of hanging. 0 means
	// DefaultTimeout. A ctx deadline that comes first still wins.
	Timeout time.Duration
	// MaxRetries is how many times minio-go tries a request that failed
	// for a transient reason (connection refused, 5xx, throttling).
	// 0 means minio-go's default (10, with capped exponential backoff).
	MaxRetries int
}

// DefaultTimeout bounds one operation (all its retries) when
// Config.Timeout is 0. Objects are at most a few MiB, so this is generous
// even on a slow link.
const DefaultTimeout = 5 * time.Minute

// dialTimeout bounds one TCP connect; minio-go's default is 30 s.
const dialTimeout = 10 * time.Second

// endpoint is a parsed Config.Endpoint.
type endpoint struct {
	host   string // host:port, what minio.New takes
	secure bool   // HTTPS
}

// parseEndpoint accepts "host[:port]", "http://host[:port]" and
// "https://host[:port]" (a trailing "/" is allowed).
func parseEndpoint(s string, insecure bool) (endpoint, error) {
	if s == "" {
		return endpoint{}, fmt.Errorf("%w: no endpoint given (for example --endpoint https://s3.example.com)", ErrBadConfig)
	}
	if !strings.Contains(s, "://") {
		if strings.ContainsAny(s, "/?#@ ") {
			return endpoint{}, fmt.Errorf("%w: endpoint %q: want host:port or http(s)://host:port", ErrBadConfig, s)
		}
		if _, _, err := net.SplitHostPort(s); err != nil && strings.Count(s, ":") > 0 {
			return endpoint{}, fmt.Errorf("%w: endpoint %q: %v", ErrBadConfig, s, err)
		}
		return endpoint{host: s, secure: !insecure}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("%w: endpoint %q: %v", ErrBadConfig, s, err)
	}
	var secure bool
	switch u.Scheme {
	case "https":
		if insecure {
			return endpoint{}, fmt.Errorf("%w: endpoint %q is https but plain HTTP (insecure) was asked for", ErrBadConfig, s)
		}
		secure = true
	case "http":
	default:
		return endpoint{}, fmt.Errorf("%w: endpoint %q: scheme must be http or https", ErrBadConfig, s)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return endpoint{}, fmt.Errorf("%w: endpoint %q: want %s://host:port with no path, query or user", ErrBadConfig, s, u.Scheme)
	}
	return endpoint{host: u.Host, secure: secure}, nil
}

// String is the endpoint as a URL, for messages.
func (e endpoint) String() string {
	if e.secure {
		return "https://" + e.host
	}
	return "http://" + e.host
}

// cleanPrefix strips surrounding slashes and rejects empty, "." and ".."
// segments, which S3 servers treat inconsistently.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: prefix %q has an empty, \".\" or \"..\" segment", ErrBadConfig, p)
		}
	}
	return p, nil
}

// newCredentials takes the keys from cfg, else from the environment.
func newCredentials(cfg Config) (*credentials.Credentials, error) {
	ak, sk, token := cfg.AccessKey, cfg.SecretKey, ""
	if ak == "" && sk == "" {
		ak, sk = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		token = os.Getenv("AWS_SESSION_TOKEN")
	}
	if ak == "" || sk == "" {
		return nil, fmt.Errorf("%w: give an access key and a secret key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", ErrNoCredentials)
	}
	return credentials.NewStaticV4(ak, sk, token), nil
}

// newTransport is minio-go's default transport with a shorter dial
// timeout and, if cfg names one, an extra trusted CA.
func newTransport(cfg Config, ep endpoint) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(ep.secure)
	if err != nil {
		return nil, fmt.Errorf("build HTTP transport: %w", err)
	}
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	if cfg.CACertFile == "" {
		return tr, nil
	}
	if !ep.secure {
		return nil, fmt.Errorf("%w: a CA certificate file was given but endpoint %s is plain HTTP", ErrBadConfig, ep)
	}
	pem, err := os.ReadFile(cfg.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: CA certificate file %s holds no PEM certificate", ErrBadConfig, cfg.CACertFile)
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}
