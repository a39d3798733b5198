package s3

import (
	"fmt"
	"strings"
)

// Scheme is the URL scheme of an S3 repository: s3://BUCKET/PREFIX.
const Scheme = "s3://"

// IsURL reports whether s names an S3 repository rather than a directory.
func IsURL(s string) bool { return strings.HasPrefix(s, Scheme) }

// ParseURL splits a repository URL "s3://BUCKET" or "s3://BUCKET/PREFIX"
// (the endpoint is given separately, --endpoint). The prefix comes back
// without surrounding slashes. Errors wrap ErrBadURL and say what is wrong.
func ParseURL(s string) (bucket, prefix string, err error) {
	if !IsURL(s) {
		return "", "", fmt.Errorf("%w %q: must start with %s (s3://BUCKET/PREFIX)", ErrBadURL, s, Scheme)
	}
	rest := strings.TrimPrefix(s, Scheme)
	if strings.ContainsAny(rest, "?#") {
		return "", "", fmt.Errorf("%w %q: no query or fragment allowed (s3://BUCKET/PREFIX; the endpoint is --endpoint)", ErrBadURL, s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%w %q: no bucket name (s3://BUCKET/PREFIX)", ErrBadURL, s)
	}
	if strings.ContainsAny(bucket, "@:") {
		return "", "", fmt.Errorf("%w %q: %q is not a bucket name; put the server in --endpoint and credentials in the environment", ErrBadURL, s, bucket)
	}
	if err := checkBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("%w %q: %v", ErrBadURL, s, err)
	}
	prefix, err = cleanPrefix(prefix)
	if err != nil {
		return "", "", fmt.Errorf("%w %q: %v", ErrBadURL, s, err)
	}
	return bucket, prefix, nil
}

// checkBucketName applies the S3 bucket naming rules: 3 to 63 characters
// of [a-z0-9.-], starting and ending with a letter or digit, no "..".
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters long", b)
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket name %q may hold only lowercase letters, digits, '.' and '-'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) || strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit and have no \"..\"", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
