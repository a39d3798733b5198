// Package repos is the daemon's set of known backup repositories: the
// records of the catalog's "repos" bucket (docs/FORMATS.md), each opened
// on first use (its backend, local or S3, and its keys) and kept open
// until it is removed or the registry closes.
//
// State: a record is known (in the catalog and the set) and either closed
// or open. Add opens it at once (creating it with Init), so that a wrong
// password or endpoint is refused before the record is written; a record
// loaded at start opens on its first Use, and one that cannot be opened
// stays known and says why in List.
//
// Locking: one mutex guards the set, the names Add is creating and each
// record's open state; no I/O runs under it. Opening a repository (its
// config, over the network for S3, up to the backend's timeout) runs
// outside it, one open per record at a time: other callers of that
// record wait for the result or for their ctx, and every other record
// stays usable. An open that finds its record removed, or the registry
// closed, when it ends closes what it opened. The engine takes no lock of
// its own around these calls, and this package calls nothing of the
// engine.
//
// Errors wrap ErrNotFound, ErrExists, ErrRepo or ErrInvalidArgument, with
// a message that names the repository and says what to do.
package repos
