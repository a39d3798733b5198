// Package s3 is the backup repository's backend on S3-compatible object
// storage (AWS S3, MinIO, Ceph RGW, SeaweedFS, versitygw) through
// minio-go.
//
// A repository is the set of objects under BUCKET/PREFIX/: the backend
// key "packs/ab/ab12..." is the object "PREFIX/packs/ab/ab12...". Put is
// one PutObject with the exact length (S3 makes an object visible whole or
// not at all), Get reads the whole object, GetRange is one GET with a
// Range header, List is a recursive listing of the prefix, Delete
// tolerates a missing object.
//
// Credentials come from Config or, when both keys are empty, from the
// environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
// AWS_SESSION_TOKEN.
//
// Failures: minio-go retries transient errors (connection refused, 5xx,
// throttling) with capped exponential backoff; every operation is also
// bounded by Config.Timeout, so a dead server makes calls fail rather than
// hang. Errors name the object as s3://bucket/prefix/key and the endpoint,
// and wrap backend.ErrNotExist, backend.ErrNoSpace (quota, InsufficientStorage),
// ErrAccessDenied or ErrNoBucket when the server says so.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// Backend stores repository objects in one bucket under one prefix.
// It is safe for concurrent use.
type Backend struct {
	client    *minio.Client
	transport *http.Transport
	endpoint  string // URL of the server, for messages
	bucket    string
	prefix    string // "" or "a/b" (no surrounding slashes)
	url       string // s3://bucket/prefix
	timeout   time.Duration
	closed    atomic.Bool
}

var _ backend.Backend = (*Backend)(nil)

// Open connects to the server and checks that the credentials work and
// the bucket exists (ErrNoBucket otherwise: CreateBucket makes it).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.probe(ctx); err != nil {
		b.transport.CloseIdleConnections()
		return nil, b.wrapErr("open repository", "", err)
	}
	return b, nil
}

// probe lists at most one object under the prefix. A listing (a GET with
// an error body) tells a missing bucket (NoSuchBucket) from refused
// credentials more reliably than HEAD bucket, whose empty 404/403 answer
// some servers use for both; it also proves the credentials may list.
func (b *Backend) probe(ctx context.Context) error {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	opts := minio.ListObjectsOptions{Prefix: b.prefix, MaxKeys: 1}
	for obj := range b.client.ListObjectsIter(ctx, b.bucket, opts) {
		return obj.Err
	}
	return nil
}

// CreateBucket makes cfg.Bucket on the server unless it exists already
// (for repo init). It checks the credentials like Open does.
func CreateBucket(ctx context.Context, cfg Config) error {
	b, err := newBackend(cfg)
	if err != nil {
		return err
	}
	defer b.transport.CloseIdleConnections()
	err = b.probe(ctx)
	if err == nil {
		return nil // exists already
	}
	if !errors.Is(classify(err), ErrNoBucket) {
		return b.wrapErr("create bucket", "", err)
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	err = b.client.MakeBucket(ctx, b.bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
		// BucketAlreadyOwnedByYou: a concurrent init made it first.
		return b.wrapErr("create bucket", "", err)
	}
	return nil
}

// newBackend validates cfg and builds the client without any request.
func newBackend(cfg Config) (*Backend, error) {
	ep, err := parseEndpoint(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	if err := checkBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	prefix, err := cleanPrefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	creds, err := newCredentials(cfg)
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(cfg, ep)
	if err != nil {
		return nil, err
	}
	client, err := minio.New(ep.host, &minio.Options{
		Creds:      creds,
		Secure:     ep.secure,
		Transport:  tr,
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %s: %v", ErrBadConfig, ep, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	url := Scheme + cfg.Bucket
	if prefix != "" {
		url += "/" + prefix
	}
	return &Backend{
		client:    client,
		transport: tr,
		endpoint:  ep.String(),
		bucket:    cfg.Bucket,
		prefix:    prefix,
		url:       url,
		timeout:   timeout,
	}, nil
}

// opContext bounds one operation by the backend's timeout.
func (b *Backend) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.timeout)
}

// object returns the object name of a backend key.
func (b *Backend) object(key string) string {
	if b.prefix == "" {
		return key
	}
	return b.prefix + "/" + key
}

// check rejects bad keys and use after Close.
func (b *Backend) check(op, key string) error {
	if b.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, b.url, ErrClosed)
	}
	if err := backend.CheckKey(key); err != nil {
		return fmt.Errorf("%s %s: %w", op, b.url, err)
	}
	return nil
}

// Put stores data under key with one PutObject of the exact length.
func (b *Backend) Put(ctx context.Context, key string, data []byte) error {
	if err := b.check("put", key); err != nil {
		return err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	_, err := b.client.PutObject(ctx, b.bucket, b.object(key), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return b.wrapErr("put", key, err)
	}
	return nil
}

// Get reads the whole object.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := b.check("get", key); err != nil {
		return nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	// One GET whose body is read whole. (minio.Client.GetObject would
	// HEAD first and then GET with If-Match, which fails when another
	// writer replaces the object in between.)
	core := minio.Core{Client: b.client}
	body, info, _, err := core.GetObject(ctx, b.bucket, b.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, b.wrapErr("get", key, err)
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, b.wrapErr("get", key, err)
	}
	if got, want := int64(len(data)), info.Size; got != want {
		return nil, b.wrapErr("get", key, fmt.Errorf("short read: got %d of %d bytes", got, want))
	}
	return data, nil
}

// GetRange reads [off, off+n) of the object with one ranged GET (no
// HEAD first, for the reason Get gives).
func (b *Backend) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := b.check("get", key); err != nil {
		return nil, err
	}
	if err := backend.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, b.wrapErr("get", key, err)
	}
	core := minio.Core{Client: b.client}
	body, _, _, err := core.GetObject(ctx, b.bucket, b.object(key), opts)
	if minio.ToErrorResponse(err).Code == "InvalidRange" {
		// The range starts at or past the end of the object.
		return nil, b.wrapErr("get", key, fmt.Errorf("range [%d, +%d): %w", off, n, io.ErrUnexpectedEOF))
	}
	if err != nil {
		return nil, b.wrapErr("get", key, err)
	}
	defer body.Close()
	// A range that runs past the end is answered with the bytes there are.
	p := make([]byte, 0, min(n, 64<<20))
	buf := bytes.NewBuffer(p)
	if _, err := io.Copy(buf, io.LimitReader(body, n+1)); err != nil {
		return nil, b.wrapErr("get", key, err)
	}
	if got := int64(buf.Len()); got != n {
		return nil, b.wrapErr("get", key, fmt.Errorf("range [%d, +%d): got %d bytes: %w", off, n, got, io.ErrUnexpectedEOF))
	}
	return buf.Bytes(), nil
}

// Size returns the object's length.
func (b *Backend) Size(ctx context.Context, key string) (int64, error) {
	if err := b.check("stat", key); err != nil {
		return 0, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	st, err := b.client.StatObject(ctx, b.bucket, b.object(key), minio.StatObjectOptions{})
	if err != nil {
		return 0, b.wrapErr("stat", key, err)
	}
	return st.Size, nil
}

// List calls fn for every key under prefix. Objects under the repository
// prefix whose names are not valid backend keys (directory markers ending
// in "/", objects some other tool put there) are not repository objects
// and are skipped.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	if b.closed.Load() {
		return fmt.Errorf("list %s: %w", b.url, ErrClosed)
	}
	// A listing may be long, so the timeout bounds the wait for each next
	// object (a stalled server) rather than the whole listing; the time
	// fn takes does not count.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil) // also stops minio-go's listing if fn returns early
	stall := time.AfterFunc(b.timeout, func() {
		cancel(fmt.Errorf("no listing progress for %v: %w", b.timeout, context.DeadlineExceeded))
	})
	defer stall.Stop()
	base := ""
	if b.prefix != "" {
		base = b.prefix + "/"
	}
	opts := minio.ListObjectsOptions{Prefix: base + prefix, Recursive: true}
	for obj := range b.client.ListObjectsIter(ctx, b.bucket, opts) {
		stall.Stop()
		if obj.Err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return b.wrapErr("list", "", cause)
			}
			return b.wrapErr("list", "", obj.Err)
		}
		key, ok := strings.CutPrefix(obj.Key, base)
		if ok && backend.CheckKey(key) == nil {
			if err := fn(key, obj.Size); err != nil {
				return err
			}
		}
		stall.Reset(b.timeout)
	}
	if cause := context.Cause(ctx); cause != nil {
		return b.wrapErr("list", "", cause)
	}
	return nil
}

// Delete removes the object; a missing object is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.check("delete", key); err != nil {
		return err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	err := b.client.RemoveObject(ctx, b.bucket, b.object(key), minio.RemoveObjectOptions{})
	if err != nil && classify(err) != backend.ErrNotExist {
		return b.wrapErr("delete", key, err)
	}
	return nil
}

// Location is "s3://bucket/prefix (endpoint)".
func (b *Backend) Location() string {
	return b.url + " (" + b.endpoint + ")"
}

// Close drops idle connections; later calls fail with ErrClosed.
func (b *Backend) Close() error {
	b.closed.Store(true)
	b.transport.CloseIdleConnections()
	return nil
}
