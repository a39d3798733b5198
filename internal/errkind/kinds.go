package errkind

import "errors"

// The kinds of error the daemon returns. Every error of the engine and of
// its concern packages wraps at most one of them, with a message that names the volume or datastore and
// says what to do; the API maps each to an HTTP status and a code.
var (
	// ErrVolumeNotFound: no volume of that name on any datastore.
	ErrVolumeNotFound = errors.New("volume not found")

	// ErrVolumeExists: a volume of that name exists (names are unique
	// across datastores).
	ErrVolumeExists = errors.New("volume already exists")

	// ErrVolumeInUse: the volume has open NBD connections or running
	// jobs, or another change to it is in progress.
	ErrVolumeInUse = errors.New("volume in use")

	// ErrVolumeUnavailable: the volume's files could not be opened; it is
	// listed with its error but not served.
	ErrVolumeUnavailable = errors.New("volume unavailable")

	// ErrDatastoreNotFound: no datastore of that name.
	ErrDatastoreNotFound = errors.New("datastore not found")

	// ErrDatastoreExists: the name or the path is already a datastore.
	ErrDatastoreExists = errors.New("datastore already exists")

	// ErrDatastoreOffline: the datastore is in the catalog but its
	// directory or marker cannot be read (unmounted NFS, moved disk).
	ErrDatastoreOffline = errors.New("datastore offline")

	// ErrInvalidArgument: a bad name, size, path or format.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrFileExists: an export's target file already exists.
	ErrFileExists = errors.New("file already exists")

	// ErrQemuImgMissing: the operation needs qemu-img, which is not
	// installed.
	ErrQemuImgMissing = errors.New("qemu-img not found")

	// ErrNoTCP: the daemon has no NBD TCP listener.
	ErrNoTCP = errors.New("no NBD TCP listener")

	// ErrClosed: the engine is shut down.
	ErrClosed = errors.New("engine closed")

	// ErrMirrorNotFound: the volume has no mirror.
	ErrMirrorNotFound = errors.New("mirror not found")
	// ErrMirrorExists: the volume already has a mirror.
	ErrMirrorExists = errors.New("mirror already exists")
	// ErrNotReplica: failover of a volume that is not a replica here.
	ErrNotReplica = errors.New("not a replica")
	// ErrSplitBrain: both sides of a mirror took writes the other lacks.
	ErrSplitBrain = errors.New("split brain")
	// ErrPeer: the other node could not be reached or refused.
	ErrPeer = errors.New("peer node error")
	// ErrStreamEpoch: a replica stream's export name carries no valid
	// session epoch (VOLUME@GENERATION@EPOCH), so it cannot be fenced
	// against older streams; the source node must be upgraded. Only the
	// NBD refusal carries it, never the API.
	ErrStreamEpoch = errors.New("replica stream without a valid epoch")
	// ErrSnapshotNotFound / ErrSnapshotExists: a snapshot name that is not
	// on the volume, or already is.
	ErrSnapshotNotFound = errors.New("snapshot not found")
	ErrSnapshotExists   = errors.New("snapshot already exists")

	// ErrBackupNotFound: no backup with that id (or prefix) in the
	// repository.
	ErrBackupNotFound = errors.New("backup not found")
)
