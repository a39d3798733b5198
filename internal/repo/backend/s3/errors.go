package s3

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// Errors of the S3 backend, returned wrapped. Object-level conditions use
// the backend package's sentinels (backend.ErrNotExist, backend.ErrNoSpace).
var (
	// ErrBadURL: a repository URL is not of the form s3://BUCKET[/PREFIX].
	ErrBadURL = errors.New("invalid S3 repository URL")
	// ErrBadConfig: the endpoint, bucket, prefix or TLS settings are unusable.
	ErrBadConfig = errors.New("invalid S3 configuration")
	// ErrNoCredentials: neither the configuration nor the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) gives an access key.
	ErrNoCredentials = errors.New("no S3 credentials")
	// ErrAccessDenied: the server refused the credentials or the request
	// (wrong access key or secret, or no permission on the bucket).
	ErrAccessDenied = errors.New("S3 access denied")
	// ErrNoBucket: the bucket does not exist on the server.
	ErrNoBucket = errors.New("S3 bucket does not exist")
	// ErrClosed: the backend was used after Close.
	ErrClosed = errors.New("S3 backend is closed")
)

// S3 error codes that mean "out of space" on the common servers: AWS and
// Ceph RGW quotas, versitygw (ENOSPC/EDQUOT on its filesystem), MinIO.
var noSpaceCodes = map[string]bool{
	"QuotaExceeded":                  true,
	"InsufficientStorage":            true,
	"XMinioStorageFull":              true,
	"XMinioAdminBucketQuotaExceeded": true,
	"StorageFull":                    true,
}

// Error codes of a refused signature or credential.
var deniedCodes = map[string]bool{
	"AccessDenied":          true,
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"InvalidToken":          true,
	"ExpiredToken":          true,
	"AllAccessDisabled":     true,
	// versitygw's answer (404) to an access key it does not know.
	"XAdminUserNotFound": true,
}

// classify maps a minio-go error to the sentinel it stands for, or nil
// when the error is none of them (a transport failure, a server error).
func classify(err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return nil
	}
	switch {
	case resp.Code == "NoSuchKey":
		return backend.ErrNotExist
	case resp.Code == "NoSuchBucket":
		return ErrNoBucket
	case noSpaceCodes[resp.Code] || resp.StatusCode == http.StatusInsufficientStorage:
		return backend.ErrNoSpace
	case deniedCodes[resp.Code]:
		return ErrAccessDenied
	}
	return nil
}

// wrapErr turns an error of operation op on key into one that names the
// key and the repository location and wraps the matching sentinel, so
// callers can use errors.Is with backend.ErrNotExist, backend.ErrNoSpace,
// ErrAccessDenied and ErrNoBucket as well as with context errors; the
// minio.ErrorResponse stays reachable with errors.As.
func (b *Backend) wrapErr(op, key string, err error) error {
	where := b.url
	if key != "" {
		where = b.url + "/" + key
	}
	switch sentinel := classify(err); sentinel {
	case nil:
		return fmt.Errorf("%s %s (endpoint %s): %w", op, where, b.endpoint, err)
	case ErrAccessDenied:
		return fmt.Errorf("%s %s (endpoint %s): %w: %w; check the access key and secret key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the bucket's permissions",
			op, where, b.endpoint, ErrAccessDenied, err)
	case ErrNoBucket:
		return fmt.Errorf("%s %s: %w: bucket %q not found at %s; create it first (extrasphere repo init creates it)",
			op, where, ErrNoBucket, b.bucket, b.endpoint)
	default:
		return fmt.Errorf("%s %s: %w: %w", op, where, sentinel, err)
	}
}
