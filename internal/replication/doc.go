// Package replication mirrors this node's volumes to a target and holds
// the replicas other nodes mirror into: mirror create, pause, resume and
// remove, the replica side of a stream, failover and failback.
//
// It owns no volume. What it needs of the volumes (look them up, lock
// them, hold their I/O to insert or remove the mirror's filter, count
// their NBD connections) it asks of its Host, which internal/engine
// implements. Each volume carries a State, kept with the volume by the
// engine: the running mirror (whose filter the engine's stack wraps below
// the tracker) and the replica record. The data path of a mirror (the
// filter, the copier, the policies, reconnection and resync) is
// internal/mirror's; its wire protection, internal/fence's.
//
// # Targets
//
//	extrasphere://HOST:PORT/VOL   a paired node: the replica volume is made
//	                              there (peer API), data flows over NBD
//	                              with TLS as the stream VOL@GEN@EPOCH
//	nbd://HOST:PORT/EXPORT        any NBD server (another host only with
//	nbd+unix:///EXPORT?socket=P   Insecure); a file:///PATH raw file
//
// # A mirror's record and dirty log
//
// A volume has at most one mirror. Its record (catalog.Mirror: target,
// policy, generation, Synced once the replica was ever complete, Diverged
// while this side acknowledges writes the replica lacks) is written before
// the state it describes: Diverged before the first such write is
// acknowledged (OnDegrade), Synced when the mirror reports in-sync
// (OnChange). What the replica lacks is the volume's CBT bitmap "mirror"
// (MirrorBitmap), crash-safe through the activity log: at start every
// recorded mirror resumes from it (Start), and the first copy is a full
// one until Synced. The dirty log is reset only with the volume's I/O
// held (dirtyLog.Rotate), so no write loses its bit.
//
// # Roles of a volume
//
//	plain --mirror create--> source --mirror rm--> plain
//	plain --CreateReplica (peer)--> replica --Failover--> failed-over
//	failed-over --Failback--> source (mirroring back to the old source)
//	source --AcceptFailback (peer)--> replica (of the failed-over volume)
//
// A replica is served read-only under its name and writable only as a
// stream of the paired source node, one session (epoch) at a time: a
// newer stream fences every older one and waits until their requests and
// connections are gone before its NBD_OPT_GO is acknowledged, and only
// then does the source resync (OpenStream). Failover seals the stream's
// fence, so no write of the old source lands after it, then makes the
// volume writable and starts recording its writes for failback. Failback
// refuses a split brain (both sides wrote) and otherwise sends only what
// differs.
//
// # Locking order
//
//	Vol.SnapMu()       one stack change per volume (mostly with TryLock:
//	                   a busy volume is refused, not waited for)
//	pivot (I/O hold)   in-flight I/O finished, new I/O waits
//	Host.Lock          the volumes' lock: Vol's *Locked methods and
//	                   State.replica, streams and rfence
//
// mirrorEntry.mu guards one mirror's record and its catalog writes; it is
// never held together with the Host's lock. A replica's fence
// (internal/fence) is waited on with neither held.
package replication
