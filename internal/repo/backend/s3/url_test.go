package s3

import (
	"errors"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in                     string
		wantBucket, wantPrefix string
		wantErr                bool
	}{
		{in: "s3://backups", wantBucket: "backups"},
		{in: "s3://backups/", wantBucket: "backups"},
		{in: "s3://backups/host1", wantBucket: "backups", wantPrefix: "host1"},
		{in: "s3://backups/a/b/c/", wantBucket: "backups", wantPrefix: "a/b/c"},
		{in: "s3://my.bucket-01/x", wantBucket: "my.bucket-01", wantPrefix: "x"},
		{in: "backups/host1", wantErr: true},
		{in: "/srv/backups", wantErr: true},
		{in: "S3://backups", wantErr: true},
		{in: "s3:backups", wantErr: true},
		{in: "http://backups/x", wantErr: true},
		{in: "s3://", wantErr: true},
		{in: "s3:///prefix", wantErr: true},
		{in: "s3://ab", wantErr: true},
		{in: "s3://Backups", wantErr: true},
		{in: "s3://back_ups", wantErr: true},
		{in: "s3://-backups", wantErr: true},
		{in: "s3://back..ups", wantErr: true},
		{in: "s3://key:secret@backups", wantErr: true},
		{in: "s3://127.0.0.1:9000/backups", wantErr: true},
		{in: "s3://backups/a//b", wantErr: true},
		{in: "s3://backups/a/../b", wantErr: true},
		{in: "s3://backups/x?region=eu", wantErr: true},
		{in: "s3://backups/x#frag", wantErr: true},
	}
	for _, tt := range tests {
		bucket, prefix, err := ParseURL(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadURL) {
				t.Errorf("ParseURL(%q) = %q, %q, %v; want an error wrapping ErrBadURL", tt.in, bucket, prefix, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if bucket != tt.wantBucket || prefix != tt.wantPrefix {
			t.Errorf("ParseURL(%q) = %q, %q; want %q, %q", tt.in, bucket, prefix, tt.wantBucket, tt.wantPrefix)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in         string
		insecure   bool
		wantHost   string
		wantSecure bool
		wantErr    bool
	}{
		{in: "s3.example.com", wantHost: "s3.example.com", wantSecure: true},
		{in: "127.0.0.1:7070", insecure: true, wantHost: "127.0.0.1:7070"},
		{in: "127.0.0.1:7070", wantHost: "127.0.0.1:7070", wantSecure: true},
		{in: "http://127.0.0.1:7070", wantHost: "127.0.0.1:7070"},
		{in: "http://127.0.0.1:7070/", insecure: true, wantHost: "127.0.0.1:7070"},
		{in: "https://s3.example.com:443", wantHost: "s3.example.com:443", wantSecure: true},
		{in: "[::1]:9000", insecure: true, wantHost: "[::1]:9000"},
		{in: "", wantErr: true},
		{in: "https://s3.example.com", insecure: true, wantErr: true},
		{in: "ftp://s3.example.com", wantErr: true},
		{in: "http://s3.example.com/bucket", wantErr: true},
		{in: "http://user:pw@s3.example.com", wantErr: true},
		{in: "http://", wantErr: true},
		{in: "s3.example.com/bucket", wantErr: true},
		{in: "host:port:extra", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseEndpoint(tt.in, tt.insecure)
		if tt.wantErr {
			if !errors.Is(err, ErrBadConfig) {
				t.Errorf("parseEndpoint(%q, %v) = %+v, %v; want an error wrapping ErrBadConfig", tt.in, tt.insecure, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseEndpoint(%q, %v): %v", tt.in, tt.insecure, err)
			continue
		}
		if got.host != tt.wantHost || got.secure != tt.wantSecure {
			t.Errorf("parseEndpoint(%q, %v) = %+v; want host %q secure %v", tt.in, tt.insecure, got, tt.wantHost, tt.wantSecure)
		}
	}
}
