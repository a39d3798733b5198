// Package mirror is synchronous replication of one volume to a replica
// device: another Extrasphere node, any NBD server, or a flat file. It sits
// in the volume's stack below the changed-block tracker and above the
// layers (engine.buildStack), so it sees every write after the tracker has
// recorded it and before the local layers have it.
//
// A Mirror holds the replica connection, the set of 64 KiB chunks the
// replica lacks ("dirty"), and the copier that sends those chunks. A
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
//	           acknowledged until the replica has its chunks again
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
// Crash safety: the Journal is a persistent superset of the chunks the
// replica may lack (the engine uses the volume's "mirror" CBT bitmap, whose
// activity log makes every write crash-safe without an I/O per write). The
// tracker sets its bits before a write comes here. It is reset (Rotate) only
// at a checkpoint: in-sync, nothing dirty, and the replica flushed after the
// reset, so everything written before the reset is durable on the replica.
// When the replica fails, everything the journal holds is marked dirty:
// that covers the writes the replica acknowledged but may not have made
// durable. After a crash of this daemon the journal (plus the extents its
// activity log held hot) is the dirty set the mirror starts with.
package mirror
