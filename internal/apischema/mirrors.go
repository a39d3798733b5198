package apischema

// Mirrors and replicas (/v1/mirrors, and the peer routes PeerReplicas and
// PeerFailback).

import (
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Mirror modes and roles (MirrorOptions.Mode, MirrorInfo.Role).
const (
	ModeSync       = "sync"
	RoleSource     = "source"
	RoleReplica    = "replica"
	RoleFailedOver = "failed-over"
)

// MirrorOptions create a mirror.
type MirrorOptions struct {
	Volume   string `json:"volume"`
	Target   string `json:"target"`
	Mode     string `json:"mode"`
	Policy   string `json:"policy"`
	Insecure bool   `json:"insecure"` // allow plain nbd:// to a host that is not this one
}

// MirrorInfo describes a mirror (role source) or a replica this node
// holds for another (role replica or failed-over).
type MirrorInfo struct {
	Volume string `json:"volume"`
	Role   string `json:"role"`
	Target string `json:"target,omitempty"`
	Mode   string `json:"mode,omitempty"`
	MirrorStatus
	LagSeconds float64 `json:"lag_seconds"` // how long the replica has been behind; 0 in sync
	Gen        string  `json:"gen,omitempty"`
	Synced     bool    `json:"synced"`
	Diverged   bool    `json:"diverged"` // this side acknowledged writes the replica lacks
	// Replica side.
	Source     string    `json:"source,omitempty"` // NODE/VOLUME that writes here
	Streams    int       `json:"streams,omitempty"`
	FailedOver time.Time `json:"failed_over,omitzero"`
}

// ReplicaRequest asks a node to hold a replica (peer API).
type ReplicaRequest struct {
	Volume       string `json:"volume"`
	Size         int64  `json:"size"`
	SourceVolume string `json:"source_volume"`
	Gen          string `json:"gen"`
}

// ReplicaResponse tells the source where to send.
type ReplicaResponse struct {
	NBDPort string `json:"nbd_port"`
}

// FailbackRequest asks the old source (peer API) to become the replica.
type FailbackRequest struct {
	Volume       string `json:"volume"`        // the old source's volume
	OldGen       string `json:"old_gen"`       // the generation that was failed over
	NewGen       string `json:"new_gen"`       // the reverse mirror's
	SourceVolume string `json:"source_volume"` // the failed-over volume (sends from now on)
	Size         int64  `json:"size"`
	TargetWrote  bool   `json:"target_wrote"` // the failed-over side wrote since failover
}

// FailbackResponse is what the old source lacks compared with the
// failed-over side: everything it wrote that may not have reached it.
type FailbackResponse struct {
	Dirty   []blockdev.Range `json:"dirty"`
	NBDPort string           `json:"nbd_port"`
}

// Mirror states (MirrorStatus.State) and policies (MirrorOptions.Policy,
// MirrorStatus.Policy): internal/mirror's State and Policy values.
const (
	MirrorSyncing   = "syncing"
	MirrorInSync    = "in-sync"
	MirrorDegraded  = "degraded"
	MirrorResyncing = "resyncing"
	MirrorPaused    = "paused"
	MirrorRefused   = "refused"

	PolicyDegrade = "degrade"
	PolicyBlock   = "block"
)

// Replica states (MirrorStatus.State of a MirrorInfo whose Role is
// RoleReplica or RoleFailedOver).
const (
	ReplicaReceiving = "receiving" // a source's stream is open
	ReplicaIdle      = "idle"      // no stream is open
	ReplicaWritable  = "writable"  // failed over: the volume takes writes here
)

// MirrorStatus is a mirror's replication state (internal/mirror's Status;
// States and Policies are listed in docs/API.md).
type MirrorStatus struct {
	State       string    `json:"state"`
	Policy      string    `json:"policy"`
	Connected   bool      `json:"connected"`
	BytesToSync int64     `json:"bytes_to_sync"` // dirty chunks and chunks being copied
	BytesSent   int64     `json:"bytes_sent"`    // written to the replica since start (writes and copies)
	BytesCopied int64     `json:"bytes_copied"`  // sent by the copier (sync and resync)
	Since       time.Time `json:"since"`         // when the state last changed
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// FailoverRequest is the body of POST /v1/volumes/{name}/failover.
type FailoverRequest struct {
	Force bool `json:"force,omitempty"`
}
