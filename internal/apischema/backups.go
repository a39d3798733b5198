package apischema

// Backups, repositories and restores (/v1/backups, /v1/repos).

import "time"

// DefaultRepo is the repository name used when a request names none.
const DefaultRepo = "default"

// BackupRequest starts a backup run.
type BackupRequest struct {
	Volumes []string `json:"volumes"`
	Repo    string   `json:"repo,omitempty"`
	Full    bool     `json:"full,omitempty"` // read everything, even with a usable bitmap
}

// BackupInfo describes one backup for listings.
type BackupInfo struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Host    string            `json:"host,omitempty"`
	Group   string            `json:"group,omitempty"`
	Volumes []BackupVolume    `json:"volumes"`
	Stats   BackupStats       `json:"stats"`
	Keep    []string          `json:"keep,omitempty"` // prune: the rules that keep it
	Meta    map[string]string `json:"-"`
}

// BackupVolume is one volume of a backup.
type BackupVolume struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// VerifyReport is the answer of VerifyBackups.
type VerifyReport struct {
	Result   *VerifyResult `json:"result"`
	Problems []string      `json:"problems"` // each names backup, volume, offset and chunk where it can
}

// PruneRequest applies a retention policy.
type PruneRequest struct {
	Repo        string `json:"repo,omitempty"`
	KeepLast    int    `json:"keep_last,omitempty"`
	KeepHourly  int    `json:"keep_hourly,omitempty"`
	KeepDaily   int    `json:"keep_daily,omitempty"`
	KeepWeekly  int    `json:"keep_weekly,omitempty"`
	KeepMonthly int    `json:"keep_monthly,omitempty"`
	KeepYearly  int    `json:"keep_yearly,omitempty"`
	DryRun      bool   `json:"dry_run,omitempty"`
}

// PruneReport is the answer of PruneBackups.
type PruneReport struct {
	Keep   []BackupInfo `json:"keep"`
	Forget []BackupInfo `json:"forget"`
	Stats  *PruneStats  `json:"stats,omitempty"` // nil for a dry run
}

// RepoRequest adds a repository: Init creates it at Location first.
type RepoRequest struct {
	Name         string `json:"name"`
	Location     string `json:"location"` // a directory, or s3://BUCKET/PREFIX
	Endpoint     string `json:"endpoint,omitempty"`
	Insecure     bool   `json:"insecure,omitempty"`
	Region       string `json:"region,omitempty"`
	AccessKey    string `json:"access_key,omitempty"`
	SecretKey    string `json:"secret_key,omitempty"`
	PasswordFile string `json:"password_file,omitempty"` // absolute path; none: not encrypted
	Init         bool   `json:"init"`
	ChunkSize    int    `json:"chunk_size,omitempty"`
}

// RepoInfo describes a known repository.
type RepoInfo struct {
	Name      string `json:"name"`
	Location  string `json:"location"`
	Endpoint  string `json:"endpoint,omitempty"`
	ID        string `json:"id,omitempty"`
	Encrypted bool   `json:"encrypted"`
	ChunkSize int    `json:"chunk_size,omitempty"`
	Error     string `json:"error,omitempty"` // why it cannot be opened now
}

// RestoreRequest restores one volume of a backup into a new raw file or a
// new volume.
type RestoreRequest struct {
	Repo      string `json:"repo,omitempty"`
	Backup    string `json:"backup"`           // id or unique prefix
	Volume    string `json:"volume,omitempty"` // which volume of the backup ("" if it has one)
	ToFile    string `json:"to_file,omitempty"`
	ToVolume  string `json:"to_volume,omitempty"`
	Datastore string `json:"datastore,omitempty"`
}

// ServeRequest serves a backup volume as a new volume at once.
type ServeRequest struct {
	Repo      string `json:"repo,omitempty"`
	Backup    string `json:"backup"`
	Volume    string `json:"volume,omitempty"` // which volume of the backup ("" if it has one)
	Name      string `json:"name"`             // the new volume
	Datastore string `json:"datastore,omitempty"`
}

// BackupStats counts what a backup did (internal/repo's BackupStats, the
// same fields). BytesTotal = BytesReused + BytesRead; BytesRead =
// BytesZero + BytesDeduped + BytesNew.
type BackupStats struct {
	BytesTotal    int64 `json:"bytes_total"`    // sum of the volume sizes
	BytesReused   int64 `json:"bytes_reused"`   // not read: ids taken from the previous backup
	BytesRead     int64 `json:"bytes_read"`     // read from the sources
	BytesZero     int64 `json:"bytes_zero"`     // all zero (read, or a hole the source's allocation map named): null ids, nothing stored
	BytesDeduped  int64 `json:"bytes_deduped"`  // read, already in the repository (or in this backup)
	BytesNew      int64 `json:"bytes_new"`      // plaintext of the chunks uploaded
	BytesStored   int64 `json:"bytes_stored"`   // bytes stored: chunk blobs (compressed, encrypted), pack headers, index objects; not the manifest
	ChunksReused  int64 `json:"chunks_reused"`  //
	ChunksRead    int64 `json:"chunks_read"`    //
	ChunksZero    int64 `json:"chunks_zero"`    //
	ChunksDeduped int64 `json:"chunks_deduped"` //
	ChunksNew     int64 `json:"chunks_new"`     //
	PacksNew      int64 `json:"packs_new"`      // pack objects stored
}

// VerifyResult counts what a verify saw (internal/repo's VerifyResult,
// the same fields; JSON keys are the field names).
type VerifyResult struct {
	Backups           int   // manifests that decoded
	BadBackups        int   // manifests that did not
	Chunks            int   // distinct chunks referenced
	ChunksRead        int   // of those, read and checked (ReadData)
	BytesRead         int64 // pack bytes read (ReadData)
	MissingChunks     int   // referenced, in no pack the index names
	CorruptChunks     int   // referenced, every copy failed a check
	Deleted           int   // corrupt chunk copies removed by Repair (with their packs, repacked)
	Unreferenced      int   // chunk blobs no backup needs (garbage prune removes), spare copies included
	UnreferencedBytes int64 //
	Packs             int   // pack objects
	PacksRead         int   // of those, read whole (ReadData)
	OrphanPacks       int   // packs no index object names (a killed backup, an interrupted prune)
	IndexObjects      int   //
	BadIndex          int   // index objects that do not decode
	Reindexed         int   // orphan packs indexed again by Repair
	Problems          int   // calls of report
}

// PruneStats counts what a prune did (internal/repo's PruneStats, the same
// fields; JSON keys are the field names).
type PruneStats struct {
	BackupsDeleted  int   // manifests deleted (of those asked)
	BackupsKept     int   // manifests left
	ChunksDeleted   int   // chunk blobs dropped with their packs: referenced by no backup left (or spare copies)
	BytesDeleted    int64 // bytes freed: the size of the packs deleted less that of the packs repacking wrote
	ChunksKept      int   // chunks the backups left reference (one copy each)
	BytesKept       int64 // their blob bytes
	PacksDeleted    int   // packs deleted, repacked ones included
	PacksRepacked   int   // of those, packs whose live chunks were copied first
	ChunksRepacked  int   // chunks copied into new packs
	PacksWritten    int   // new packs
	BytesWritten    int64 // their size
	PacksIndexed    int   // packs no index named that hold live chunks, indexed again
	IndexWritten    int   // index objects written
	IndexDeleted    int   // index objects superseded and deleted
	UnusedBytes     int64 // blobs no backup needs left in kept packs (below the repack threshold)
	PacksUnreadable int   // unindexed packs whose header cannot be read: left alone, verify reports them
	PacksDamaged    int   // packs to repack with a chunk failing its check: kept as they are
}

// VerifyRequest is the body of POST /v1/backups/verify.
type VerifyRequest struct {
	Repo     string `json:"repo,omitempty"`
	ReadData bool   `json:"read_data,omitempty"`
}
