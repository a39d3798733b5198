package api

import (
	"context"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/node"
)

// The API's view of the daemon: one interface per concern, each holding
// only the calls its routes make. *engine.Engine implements them all (the
// coordinator over internal/replication and internal/backup); the
// handlers reach each concern only through its interface.

// Volumes are the volume and datastore routes.
type Volumes interface {
	ListVolumes(ctx context.Context) []apischema.VolumeInfo
	GetVolume(ctx context.Context, name string) (apischema.VolumeInfo, error)
	CreateVolume(ctx context.Context, o engine.CreateOptions) (apischema.VolumeInfo, error)
	RemoveVolume(ctx context.Context, name string, force bool) error
	SetReadOnly(ctx context.Context, name string, ro bool) (apischema.VolumeInfo, error)
	Import(ctx context.Context, name string, o engine.ImportOptions) (job.Info, error)
	Export(ctx context.Context, name string, o engine.ExportOptions) (job.Info, error)
	AttachTLS(ctx context.Context, name, kind string, tcp bool, tlsDir string) (string, error)
	ListDatastores(ctx context.Context) []apischema.DatastoreInfo
	AddDatastore(ctx context.Context, name, path string) (apischema.DatastoreInfo, error)
}

// Chains are the routes that change a volume's layers: snapshots,
// clones, promote and migration.
type Chains interface {
	CreateSnapshot(ctx context.Context, vols []string, name string) ([]apischema.SnapshotInfo, error)
	ListSnapshots(ctx context.Context, vol string) ([]apischema.SnapshotInfo, error)
	RemoveSnapshot(ctx context.Context, vol, name string) (job.Info, error)
	RevertSnapshot(ctx context.Context, vol, name string) (apischema.SnapshotInfo, error)
	Clone(ctx context.Context, src, snap, name string) (apischema.VolumeInfo, error)
	Promote(ctx context.Context, name string) (job.Info, error)
	Migrate(ctx context.Context, vol, to string, rate int64) (job.Info, error)
}

// Tracking is changed-block tracking.
type Tracking interface {
	EnableCBT(ctx context.Context, vol, name string) (apischema.BitmapInfo, error)
	ListCBT(ctx context.Context, vol string) (apischema.CBTInfo, error)
	ClearCBT(ctx context.Context, vol, name string) (apischema.BitmapInfo, error)
	RemoveCBT(ctx context.Context, vol, name string) error
}

// Backups are the repository, backup and restore routes.
type Backups interface {
	AddRepo(ctx context.Context, req apischema.RepoRequest) (apischema.RepoInfo, error)
	ListRepos(ctx context.Context) []apischema.RepoInfo
	RemoveRepo(ctx context.Context, name string) error
	Backup(ctx context.Context, req apischema.BackupRequest) (job.Info, error)
	ListBackups(ctx context.Context, repoName string) ([]apischema.BackupInfo, error)
	VerifyBackups(ctx context.Context, repoName string, readData bool) (apischema.VerifyReport, error)
	PruneBackups(ctx context.Context, req apischema.PruneRequest) (apischema.PruneReport, error)
	Restore(ctx context.Context, req apischema.RestoreRequest) (job.Info, error)
	ServeBackup(ctx context.Context, req apischema.ServeRequest) (apischema.VolumeInfo, error)
}

// Mirrors are the mirror and failover routes.
type Mirrors interface {
	CreateMirror(ctx context.Context, o apischema.MirrorOptions) (apischema.MirrorInfo, error)
	ListMirrors(ctx context.Context, vol string) ([]apischema.MirrorInfo, error)
	PauseMirror(ctx context.Context, name string) (apischema.MirrorInfo, error)
	ResumeMirror(ctx context.Context, name string) (apischema.MirrorInfo, error)
	RemoveMirror(ctx context.Context, name string) error
	Failover(ctx context.Context, name string, force bool) (apischema.MirrorInfo, error)
	Failback(ctx context.Context, name string) (apischema.MirrorInfo, error)
}

// Peer is what the peer API (another node) calls.
type Peer interface {
	CreateReplica(ctx context.Context, p node.Peer, req apischema.ReplicaRequest) (apischema.ReplicaResponse, error)
	AcceptFailback(ctx context.Context, p node.Peer, req apischema.FailbackRequest) (apischema.FailbackResponse, error)
}

// Clients are the NBD client (certificate) routes.
type Clients interface {
	AddClient(ctx context.Context, req apischema.ClientRequest) (apischema.ClientCredentials, error)
	Clients(ctx context.Context) ([]apischema.ClientInfo, error)
	RemoveClient(ctx context.Context, name string) error
}

// Jobs are the job routes.
type Jobs interface {
	Jobs(ctx context.Context) []job.Info
	Job(ctx context.Context, id string) (job.Info, error)
	CancelJob(ctx context.Context, id string) (job.Info, error)
}

// Backend is the whole daemon as the API serves it.
type Backend interface {
	Volumes
	Chains
	Tracking
	Backups
	Mirrors
	Clients
	Jobs
	// Node is the node service (identity, pairing), nil without one.
	Node() *node.Service
}

var _ Backend = (*engine.Engine)(nil)
var _ Peer = (*engine.Engine)(nil)
