// Package chainops changes a volume's chain of layers while the volume is
// served: snapshots (of one volume or a group at one instant), snapshot
// removal (a live merge), revert, linked clones, promote (of a clone, or
// of a volume served from a backup) and live migration to another
// datastore; and, at start, the recovery of each of them from what the
// files say (RecoverTop, RemoveOrphans, ResumeMerges, FinishMigrations).
//
// It owns no volume: what it needs (look volumes up, lock them, hold their
// I/O and install new layers under the gate, run jobs, create a volume
// from staged files) it asks of its Host, which internal/engine
// implements. The layers themselves are internal/chain's (the device over
// a base and sparse deltas, the Merger), internal/sparse's and
// internal/flat's; the on-disk format and each operation's commit point
// are in docs/FORMATS.md, section 3.
//
// # A chain and its snapshots
//
// A volume is a base (a flat file) and zero or more hosted-sparse deltas,
// each naming its parent; the top delta takes the writes. A snapshot
// freezes the top: its descriptor gets the snapshot's name
// (ddb.extrasphere.snapshotName), and a new empty delta goes on top. The
// layers of a clone's origin are shared read-only (Files().Chain.Own
// counts the volume's own deltas).
//
// # State machines
//
// Each operation is one pivot, or a job that ends in one:
//
//	snapshot     name top ─ new delta ─ pivot (I/O held throughout)
//	remove       un-name L (commit) ─ copy grains up→down (live) ─ pivot:
//	             last grains, drop the delta; an older snapshot merges M
//	             down into L: copy, name L like M, re-point, pivot, unlink
//	revert       mark CBT all dirty ─ delete layers above (top down) ─ new
//	             delta ─ pivot
//	clone        [snapshot] ─ staged delta over the frozen layer ─ commit
//	promote      copy shared layers into a new flat base ─ re-point the
//	             bottom delta (commit) ─ pivot
//	migrate      snapshot "migrate-ID" ─ copy frozen layers to a staging
//	             dir ─ switch reads (pivot) ─ merge the delta into the
//	             copies (live) ─ commit the staging dir (the commit) ─
//	             pivot ─ drop the old dir in the background
//
// Before its commit point an operation that fails undoes its steps (the
// pivot's OnAbort, or the migration's own list) and leaves the volume as
// it was; a crash before it is rolled back at start, one after it is
// finished at start.
//
// # Locking order
//
//	Vol.SnapMu()     one operation per volume; mostly TryLock (a busy
//	                 volume is refused, not waited for); several volumes
//	                 in name order (LockVolumes); a job holds it for its
//	                 whole run
//	pivot (I/O hold) in-flight I/O finished, new I/O waits; several
//	                 volumes' in name order (SnapshotGroup)
//	Host.Lock        the volumes' lock; held briefly, never across I/O
//
// Files, Layers and Datastore of a volume change only in a pivot, under
// SnapMu and the Host's lock, so holding either reads them consistently.
package chainops
