package apischema

// Volumes, datastores, snapshots and changed-block tracking (/v1/volumes,
// /v1/datastores, /v1/snapshots).

import "time"

// VolumeInfo describes a volume for the API and CLI.
type VolumeInfo struct {
	Name         string   `json:"name"`
	Size         int64    `json:"size_bytes"`
	Allocated    int64    `json:"allocated_bytes"` // blocks the flat file occupies
	Datastore    string   `json:"datastore"`
	Path         string   `json:"path"`      // descriptor
	FlatPath     string   `json:"flat_path"` // raw extent
	ReadOnly     bool     `json:"read_only"`
	Preallocated bool     `json:"preallocated"`
	Connections  int      `json:"connections"`
	Exports      []string `json:"exports"`
	Jobs         []string `json:"jobs,omitempty"`   // IDs of running jobs
	Top          string   `json:"top"`              // the file writes go to: the flat's descriptor or the top delta
	Layers       []string `json:"layers"`           // every file of the chain, base first
	Origin       string   `json:"origin,omitempty"` // a linked clone's origin volume
	Status       string   `json:"status"`           // "ok" or "error"
	Error        string   `json:"error,omitempty"`
}

// DatastoreInfo describes a datastore for the API and CLI.
type DatastoreInfo struct {
	Name     string   `json:"name"`
	Path     string   `json:"path"`
	UUID     string   `json:"uuid,omitempty"`
	Status   string   `json:"status"` // "online" or "offline"
	Error    string   `json:"error,omitempty"`
	Volumes  int      `json:"volumes"`
	Total    uint64   `json:"total_bytes"`
	Free     uint64   `json:"free_bytes"`
	Problems []string `json:"problems,omitempty"` // volumes that could not be loaded
}

// SnapshotInfo describes one snapshot of a volume.
type SnapshotInfo struct {
	Volume  string    `json:"volume"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Layer   string    `json:"layer"` // the file holding the frozen state
}

// CBTInfo is a volume's changed-block tracking.
type CBTInfo struct {
	Volume    string       `json:"volume"`
	Bitmaps   []BitmapInfo `json:"bitmaps"`
	Recovered bool         `json:"recovered"`          // the last stop was not clean: hot extents were counted dirty
	Problems  []string     `json:"problems,omitempty"` // what loading found damaged
	URI       string       `json:"uri"`                // the export, for nbdinfo --map=qemu:dirty-bitmap:NAME
}

// BitmapInfo describes one CBT bitmap (internal/cbt's BitmapInfo, the same
// fields).
type BitmapInfo struct {
	Name        string    `json:"name"`
	MetaContext string    `json:"meta_context"` // qemu:dirty-bitmap:NAME
	Created     time.Time `json:"created"`
	Granularity int64     `json:"granularity"` // bytes per bit
	DirtyBytes  int64     `json:"dirty_bytes"` // bytes in dirty blocks (the last block only up to the volume's end)
}

// Info is the body of GET /v1/info.
type Info struct {
	Version   string `json:"version"`
	DataDir   string `json:"data_dir"`
	NBDSocket string `json:"nbd_socket"`
	NBDTCP    string `json:"nbd_tcp,omitempty"` // host:port, "" when TCP is disabled
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"` // bytes; rounded up to a multiple of 512
	Datastore   string `json:"datastore,omitempty"`
	Preallocate bool   `json:"preallocate,omitempty"`
	ReadOnly    bool   `json:"read_only,omitempty"`
}

// PatchVolumeRequest is the body of PATCH /v1/volumes/{name}.
type PatchVolumeRequest struct {
	ReadOnly *bool `json:"read_only"`
}

// ImportRequest is the body of POST /v1/volumes/{name}/import.
type ImportRequest struct {
	Path      string `json:"path"`             // absolute, opened by the daemon
	Format    string `json:"format,omitempty"` // raw, qcow2, vmdk, vdi, vhdx; "" to detect
	Datastore string `json:"datastore,omitempty"`
	Size      int64  `json:"size,omitempty"` // volume size; 0 for the image's
}

// ExportRequest is the body of POST /v1/volumes/{name}/export.
type ExportRequest struct {
	Path   string `json:"path"`             // absolute; must not exist
	Format string `json:"format,omitempty"` // "" from the extension, else raw
}

// AddDatastoreRequest is the body of POST /v1/datastores.
type AddDatastoreRequest struct {
	Name string `json:"name"`
	Path string `json:"path"` // absolute
}

// CreateSnapshotRequest is the body of POST /v1/snapshots.
type CreateSnapshotRequest struct {
	Volumes []string `json:"volumes"`        // one volume, or a consistency group
	Name    string   `json:"name,omitempty"` // "" for snap-YYYYMMDD-HHMMSS
}

// CloneRequest is the body of POST /v1/volumes/{name}/clone.
type CloneRequest struct {
	Name     string `json:"name"`               // the new volume
	Snapshot string `json:"snapshot,omitempty"` // "" takes a new snapshot
}

// MigrateRequest is the body of POST /v1/volumes/{name}/migrate.
type MigrateRequest struct {
	Datastore string `json:"datastore"`
	Rate      int64  `json:"rate,omitempty"` // bytes per second; 0 is unlimited
}

// EnableCBTRequest is the body of POST /v1/volumes/{name}/cbt.
type EnableCBTRequest struct {
	Bitmap string `json:"bitmap,omitempty"` // "" for "cbt"
}
