package api

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
