package datastore

import "github.com/extrasphere/extrasphere/internal/fsx"

// SyncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func SyncDir(dir string) error { return fsx.SyncDir(dir) }
