// Package engine owns the daemon's datastores and volumes: it creates,
// lists and removes volumes, builds every export's device stack and
// changes it (the pivot), serves those stacks to the NBD server through
// nbd.Exports, and runs jobs (import, export, instant restore).
//
// Three concerns are packages of their own, each over a Host interface
// the engine implements (chain.go, replication.go, backups.go):
// internal/chainops (snapshots, snapshot removal, revert, clones, promote,
// live migration, and their recovery at start), internal/replication
// (mirrors, replicas, failover and failback; each volume keeps its
// replication.State) and internal/backup (backups and restores into a
// file or a new volume). The engine's methods for them delegate, so the
// API sees one Engine. What needs no volume of its own lives beside it
// too: internal/transfer (the copies of import, export and promote, and
// qemu-img), internal/repos (the known backup repositories),
// internal/access (which NBD client may open which volume) and
// internal/attach (the QEMU and libvirt snippets). The API's types are
// internal/apischema's. docs/ARCHITECTURE.md walks a write, a read, a
// FLUSH, a snapshot, a migration, a resync and a backup through this
// package and the ones below it.
//
// # Lifecycle
//
// Open scans every datastore of the catalog and opens every volume's
// stack, so all exports are back as soon as Open returns (the daemon
// restarts under running VMs); interrupted operations are finished or
// rolled back there, from what the files say (docs/FORMATS.md, "Chains").
// Close cancels jobs, then flushes and closes every device. The NBD server
// must be shut down before Close.
//
// A volume is in one of these states:
//
//	reserved    its name is taken by a create, clone or restore in
//	            progress (Engine.reserved); not listed, not served
//	served      it has a stack (dev, layers) and is exported; an
//	            exclusive change (v.op: remove, read-only change,
//	            failback) keeps new NBD clients out while it runs
//	error       its files could not be opened (v.err): listed with the
//	            error, not served; remove is allowed
//	removed     gone from the map; a forced removal first closes v.gone,
//	            which drops the volume's NBD connections
//
// # The stack
//
// A volume's stack is built in one function, buildStack (stack.go), from
// the top down: gate, [checked], cbt.Tracker, mirror.Filter, then the
// layers (a flat file, or a chain of sparse deltas over it; a fill.Device
// base while an instant restore runs). While the volume is served the
// stack changes only through a pivot (pivot.go): beginPivot holds the
// gate's I/O, install wraps the filters over the new layers and records
// them with the volume's files, and end without commit undoes what the
// operation registered and puts the old stack back.
//
// # Locking order
//
//	volume.snapMu        one pivoting operation per volume (snapshot, merge,
//	                     revert, promote, migration, CBT and mirror changes,
//	                     failover); mostly taken with TryLock, so a second
//	                     operation fails with errkind.ErrVolumeInUse instead of
//	                     waiting; a job holds it for its whole run
//	gate hold            (pivot) in-flight I/O finished, new I/O waits
//	Engine.mu            the maps and every field marked "guarded by
//	                     Engine.mu"; held briefly, never across device
//	                     I/O (catalog writes do happen under it: a job's
//	                     record in startJobLocked, a replica's removal)
//
// Beside them: internal/replication's mirror entries guard one mirror's
// record and its catalog writes, and internal/repos's Registry the backup
// repositories (its own lock); neither is taken under Engine.mu. The
// concern packages take Engine.mu only through their Host (Lock, or a
// method that locks), in the same order. v.layers and v.files change
// only in a pivot, under both snapMu and Engine.mu, so a reader holding
// either sees them agree.
package engine
