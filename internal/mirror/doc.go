// Package mirror is synchronous replication of one volume to a replica
// device: another Extrasphere node, any NBD server, or a flat file. It sits
// in the volume's stack below the changed-block tracker and above the
// layers (engine.buildStack), so it sees every write after the tracker has
// recorded it and before the local layers have it.
//
// A Mirror holds the replica connection, the set of 64 KiB chunks the
// replica lacks ("dirty"; those holding an acknowledged write the replica
// lacks are also "owed", see "Trims" below), and the copier that sends
// the dirty chunks. A
// Filter (one per stack; a pivot builds a new one over the new layers)
// passes I/O to the local layers and, for writes, to the replica.
//
// States:
//
//	syncing    the first copy: chunks already copied are written through,
//	           writes to the others only mark them (they are copied later)
//	in-sync    every write is acknowledged only after the local layers and
//	           the replica both completed it; FLUSH and FUA reach both
//	degraded   the replica is unreachable. Policy degrade: writes go on
//	           locally and mark their chunks. Policy block: a write is not
//	           acknowledged until the replica has its chunks again (see
//	           "Writes the replica lacks" below)
//	resyncing  the replica is back; the copier sends the dirty chunks
//	paused     stopped by the user: writes are tracked, nothing is sent
//	refused    the replica refused us for good (failed over, wrong size);
//	           nothing is sent until the mirror is recreated
//
// Exclusion between writes and the copier is per chunk: a write counts
// itself on every chunk it touches for its whole duration; the copier takes
// a run of dirty chunks only when none is being written, marks them
// copying (writes to them wait), clears their dirty bits, reads the local
// data and writes it to the replica. So a chunk's copy always reads data
// no older than the last write acknowledged on it, and a write that starts
// after the copy began waits for it to land on the replica first. A copy
// that fails marks its chunks dirty again.
//
// Connections: the Dialer opens one session to the replica (for a node, a
// pool of NBD connections with a new epoch, which the replica fences
// against every older session before the handshake completes). The copier
// and through-writes use a connection only once Dial returned, so a resync
// runs only on a session the replica has confirmed as its only writer. A
// connection given up (a request failed or timed out, pause) is aborted,
// not closed: a device with Abort (nbd.Pool) resets its sockets (SO_LINGER
// 0) so that bytes not yet sent are discarded rather than delivered when a
// cut link returns; the reconnect loop dials only after the abort
// finished, so the source never holds two sessions at once (the only
// guarantee a third-party NBD target gets: it cannot tell them apart).
//
// Crash safety: the DirtyLog is a persistent superset of the chunks the
// replica may lack (the engine uses the volume's "mirror" CBT bitmap, whose
// activity log makes every write crash-safe without an I/O per write). The
// tracker sets its bits before a write comes here. It is reset (Rotate) only
// at a checkpoint, and only after a replica flush succeeded: in sync,
// nothing dirty, and no write entered the mirror since before that flush,
// so everything the reset clears is durable on the replica. When the
// replica fails, everything the dirty log holds is marked dirty: that covers
// the writes the replica acknowledged but may not have made durable. After
// a crash of this daemon the dirty log (plus the extents its activity log
// held hot) is the dirty set the mirror starts with.
//
// Writes the replica lacks. A write (or zeroing) whose chunks the
// replica does not have when the local layers completed it is acknowledged
// only as follows; it is never acknowledged otherwise:
//
//	before the first full sync   at once (nothing is promised yet)
//	policy degrade, or paused    once the divergence is recorded durably:
//	                             its chunks are in the dirty log and OnDegrade
//	                             (the record's diverged flag) succeeded
//	policy block                 once the copier has sent its chunks (a FUA
//	                             write: and a replica flush succeeded after)
//	released (mirror rm)         at once: no replica is required any more
//
// Trims are not such writes. A trim is not sent: its chunks are marked
// dirty, and the copier sends what the local layers hold afterwards. After
// a trim the range's content is unspecified (NBD_CMD_TRIM), so a replica
// that still holds the old bytes lacks no acknowledged write: a trim is
// acknowledged once the local layers completed it, under every policy,
// and records no divergence. The mirror therefore keeps two sets: dirty
// (chunks to copy) and owed (the chunks among them, or being copied, that
// hold an acknowledged write the replica lacks: a write not sent through,
// a failed replica write, what a dropped connection's dirty log holds). The
// rules above and FLUSH's below look only at owed. A write to a chunk
// dirty only from a trim goes through like one to a clean chunk (the copy
// of the chunk waits for it and sends it again). The state still counts
// every dirty chunk: a mirror with trimmed chunks left to copy is
// resyncing, not in-sync, so that in-sync keeps meaning the replica is
// byte-equal to the volume (Close flushes it and resets the dirty log only
// then, and "mirror create --wait" returns on it). Trims on an in-sync
// mirror therefore make it resync for a moment; nothing is recorded.
//
// A write the block policy holds back fails instead (EIO to the client;
// its data is on the volume and its chunks stay in the dirty log, so the
// replica gets them later) when its context ends (the client went away),
// when the daemon stops (StopWaits: ErrStopping) or when the mirror closes
// (ErrClosed). A pause acknowledges it as a write made while paused.
//
// FLUSH (flushReplica): with policy block it succeeds only once every
// write acknowledged before it is on the replica and a replica flush after
// that succeeded; with degrade (or paused) a replica that could not be
// flushed, or lacks owed chunks, makes the flush record the divergence
// first.
//
// Every wait ends. Waits for another request (an overlapping write, a copy
// of the same chunk) last at most one replica request, which is bounded by
// Options.Timeout (the request's connection is torn down then); waits for
// the replica (policy block) end with ctx, StopWaits, Release, Pause or
// Close (waitLocked). The copier, the checkpoint and the reconnect loop
// use bounded requests and stop with Close, which itself gives up when its
// ctx ends. One wait is only as bounded as the target: a request to a
// file:// replica is a pwrite(2) that a hung NFS mount can block, and no
// context ends a system call.
package mirror
