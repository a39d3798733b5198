package nbd

import (
	"syscall"
	"time"
)

// Resource limits of the server. Every one bounds something a client can
// make the daemon hold; Options can change the first group.
const (
	// DefaultMemoryCeiling is the most the NBD buffers (write payloads read
	// ahead, read data waiting to be sent) of all clients together take by
	// default: 8 maximal (32 MiB) requests, or 8 clients each with a QD32
	// of 1 MiB requests, are in flight at once; beyond that producers wait
	// (back-pressure), nothing fails. DefaultMemoryBytes lowers it on small
	// hosts, where the daemon shares RAM with the VMs it serves.
	DefaultMemoryCeiling = 256 << 20

	// MinMemoryBytes is the smallest budget Options.MemoryBytes may set:
	// two maximal requests, so that one client with a 32 MiB request never
	// holds every other client off.
	MinMemoryBytes = 2 * MaxPayload

	// memoryRAMShare is the fraction of the host's RAM (1/memoryRAMShare)
	// the default budget may take on a small host: the VMs come first.
	memoryRAMShare = 16

	// defaultConnShare: one connection takes at most 1/defaultConnShare of
	// the global budget (but always one maximal request), so a client that
	// stops reading stalls itself long before it stalls everyone else.
	defaultConnShare = 4

	// defaultMaxConns bounds the connections of every state together. Each
	// connection in transmission holds about 150 KiB of fixed buffers and
	// goroutines outside the budget, so 1024 of them is at most ~150 MiB;
	// a host with more VM disks than that raises it (serve --nbd-max-conns).
	defaultMaxConns = 1024

	// fdShare: the default connection cap leaves at least half the process's
	// file descriptors (RLIMIT_NOFILE) to volumes, datastores, the catalog
	// and the daemon's own connections, so a flood of clients never makes
	// an open(2) of a volume file fail.
	fdShare = 2

	// defaultMaxConnsPerClient bounds the connections of one client address
	// (a TCP peer's IP; an IPv6 peer's /64, which one host owns). A paired
	// node opens 2 connections per mirrored volume, so 256 covers 128
	// mirrored volumes from one node; unix socket clients are not counted
	// per peer (see peerKey).
	defaultMaxConnsPerClient = 256

	// clientShare: by default one client address gets at most
	// 1/clientShare of the connection cap, so that a flood from one address
	// leaves room for everyone else (the local hypervisor on the unix
	// socket included) even when few descriptors lower the cap.
	clientShare = 4

	// DefaultHandshakeTimeout bounds the whole negotiation, TLS handshake
	// included: a real client needs a few round trips, a stuck one holds a
	// connection slot only this long.
	DefaultHandshakeTimeout = 30 * time.Second

	// DefaultWriteTimeout is how long a reply may make no progress (the
	// client does not read) before the connection is dropped and everything
	// it holds is released. Long enough for a busy client to catch up, short
	// enough that a stalled one cannot pin its share of the memory budget.
	DefaultWriteTimeout = 30 * time.Second

	// DefaultPayloadTimeout is how long a WRITE payload may make no
	// progress: the reader holds its buffer (budget) while it waits, so a
	// client that starts a WRITE and never finishes it is dropped like one
	// that stops reading.
	DefaultPayloadTimeout = 30 * time.Second

	// writeChunk is the most one socket write sends (or one payload read
	// takes) before the deadline is renewed: the deadline measures stalls,
	// not slow links (32 MiB over a 1 MiB/s link is slow, not stalled).
	writeChunk = 4 << 20

	// deadlineRenew: the writer renews its deadline at most this often, so a
	// stream of small replies does not pay a deadline update each.
	deadlineRenew = time.Second

	// acceptBackoffMax caps the pause after a failed accept (out of
	// descriptors, a network error): the listener keeps serving.
	acceptBackoffMax = time.Second

	// refusalLogEvery: a refused connection (over a cap) is logged once per
	// client address per this period, not once per connection, so a flood
	// cannot flood the log.
	refusalLogEvery = time.Minute

	// maxRefusalPeers bounds the memory of that rate limiter; past it,
	// refusals from further addresses are counted in one summary line.
	maxRefusalPeers = 1024

	// requestOverhead is what a request without a payload costs the global
	// budget: its worker goroutine's stack and its reply.
	requestOverhead = 8 << 10

	// maxStatusExtents bounds one BLOCK_STATUS reply chunk (8 bytes each):
	// the spec lets the server describe less than the asked range as long as
	// it makes progress, and 8192 extents of 64 KiB already cover 512 MiB.
	maxStatusExtents = 8192

	// cacheStep is the buffer NBD_CMD_CACHE reads through, whatever its
	// length: that buffer is what it is charged.
	cacheStep = 4 << 20
)

// Option data limits: the most data each option can need, checked before
// anything is allocated. Larger options are answered with an error reply
// after their data is skipped (maxOptionSkip) or end the session.
const (
	// maxInfoRequests: NBD_INFO_* types a GO/INFO may list. Four exist;
	// clients ask for each at most once.
	maxInfoRequests = 16
	// maxGoData: u32 name length, the name (NBD_MAX_STRING), u16 count and
	// the info types.
	maxGoData = 4 + maxStringLen + 2 + 2*maxInfoRequests
	// maxMetaData: u32 length, export name, u32 count, queries. The export
	// name at its maximum plus a dozen 1 KiB queries: our contexts are
	// "base:allocation" and "qemu:dirty-bitmap:NAME", and clients send one
	// or two queries.
	maxMetaData = 4 + maxStringLen + 4 + 12*(4+1024)
	// maxOptionSkip: an option over its limit, or one we do not know, is
	// skipped without being stored when its data is at most this long (and
	// gets an error reply); a longer one is not from a real client and ends
	// the session.
	maxOptionSkip = 64 << 10
)

// optionDataLimit is the largest data opt can legitimately carry.
func optionDataLimit(opt uint32) uint32 {
	switch opt {
	case optExportName:
		return maxStringLen
	case optInfo, optGo:
		return maxGoData
	case optListMetaContext, optSetMetaContext:
		return maxMetaData
	default:
		// ABORT, LIST, STARTTLS and STRUCTURED_REPLY take no data; unknown
		// options are not read.
		return 0
	}
}

// DefaultMemoryBytes is the default of Options.MemoryBytes:
// DefaultMemoryCeiling, or 1/16 of the host's RAM if that is less, but at
// least MinMemoryBytes.
func DefaultMemoryBytes() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return DefaultMemoryCeiling
	}
	ram := int64(si.Totalram) * int64(si.Unit)
	return max(min(ram/memoryRAMShare, DefaultMemoryCeiling), MinMemoryBytes)
}

// defaultMaxConnsFor is the connection cap for a process that may hold
// nofile descriptors.
func defaultMaxConnsFor(nofile uint64) int {
	return int(max(min(nofile/fdShare, defaultMaxConns), 1))
}

// defaultMaxConnsPerClientFor is the per-address cap under a total cap.
func defaultMaxConnsPerClientFor(maxConns int) int {
	return max(min(maxConns/clientShare, defaultMaxConnsPerClient), 1)
}

// openFileLimit is the process's current RLIMIT_NOFILE (soft) limit.
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return defaultMaxConns * fdShare
	}
	return r.Cur
}
