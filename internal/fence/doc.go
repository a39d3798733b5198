// Package fence lets one writer session at a time change a device: the
// replica side of a mirror uses it so that a write still travelling on an
// old, abandoned connection can never land after a newer connection's
// resync copied that region (the worst bug a mirror can have: in-sync and
// not equal).
//
// Every session carries an epoch, a number the writer makes larger for
// each new session (the source persists it, so it grows across restarts
// too). A Fence remembers the newest epoch it admitted:
//
//	Open(epoch)  epoch >  current: the session becomes current; every older
//	                               session is fenced at once (its Ended
//	                               channel closes, its requests not yet
//	                               admitted are refused) and Open waits,
//	                               until a deadline, for every request and
//	                               every handle of older sessions to end
//	             epoch == current: joins the session (one more connection
//	                               of a multi-connection pool), after the
//	                               same wait
//	             epoch <  current: refused, ErrStale
//	Enter        admits one write-like request of a handle's session, or
//	             refuses it (ErrFenced) if a newer session opened, or the
//	             fence was sealed; Leave ends it
//	Seal         fences every session (failover: the volume stops being a
//	             replica); Unseal undoes it when the caller gives up
//
// Enter and the fence's epoch change take the same mutex, and a fence
// completes only once the count of admitted requests of older sessions is
// zero: so when Open returns, every request of an older session either
// completed before it or fails with ErrFenced; none is applied later. The
// wait has a deadline (ErrTimeout): a request stuck in the device keeps
// the new session out, it is never cut short, and the caller retries.
//
// Device wraps a blockdev.Device for one handle: writes, zeroes, trims and
// flushes go through Enter/Leave; reads pass (a stale reader changes
// nothing).
//
// Lock order: Fence.mu is a leaf; no callback runs under it.
package fence
