// Package nbd implements the NBD protocol (shared/ref/nbd-proto.md): the
// fixed newstyle handshake, the transmission phase with simple and
// structured replies, and a client.
//
// A server connection is three stages that never share a buffer:
//
//	socket ─> reader (decode, read payload, admit) ─> worker goroutines (device I/O)
//	                                               ─> writer (one goroutine, replies in completion order)
//
// A reply header is never sent before its data is in hand.
//
// Nothing a client sends makes the server hold more than a named limit
// (limits.go): connections are capped at accept (total, per client
// address) before anything is allocated; negotiation reads into small
// buffers and each option's data is capped by what that option can need;
// in transmission every request holds a ticket of the connection's and of
// the server's memory budget (budget.go) until its buffers are free, READ
// data included until it was sent, so a client that stops reading stalls
// itself and is dropped after Options.WriteTimeout. A disconnect without
// NBD_CMD_DISC cancels the requests in flight; NBD_CMD_DISC and Shutdown
// let them finish and answer.
package nbd

// Handshake magics and flags. Values are fixed by the protocol.
const (
	nbdMagic          uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic          uint64 = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic     uint64 = 0x0003e889045565a9
	flagFixedNew      uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1
	cflagFixedNew     uint32 = 1 << 0
	cflagNoZeroes     uint32 = 1 << 1
	knownCliFlags            = cflagFixedNew | cflagNoZeroes
	maxOptionData            = 1 << 20 // the client's cap on an option reply; the server's caps are in limits.go
	maxStringLen             = 4096    // NBD_MAX_STRING
	exportNamePadding        = 124
)

// Options.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10
)

// Option replies.
const (
	repAck         uint32 = 1
	repServer      uint32 = 2
	repInfo        uint32 = 3
	repMetaContext uint32 = 4
	repErrBit      uint32 = 1 << 31
	repErrUnsup           = repErrBit | 1
	repErrPolicy          = repErrBit | 2
	repErrInvalid         = repErrBit | 3
	repErrPlatform        = repErrBit | 4
	repErrTLSReqd         = repErrBit | 5
	repErrUnknown         = repErrBit | 6
	repErrShutdown        = repErrBit | 7
	repErrTooBig          = repErrBit | 9
)

// Info types for NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport      uint16 = 0
	infoName        uint16 = 1
	infoDescription uint16 = 2
	infoBlockSize   uint16 = 3
)

// Transmission flags.
const (
	tflagHasFlags  uint16 = 1 << 0
	tflagReadOnly  uint16 = 1 << 1
	tflagFlush     uint16 = 1 << 2
	tflagFUA       uint16 = 1 << 3
	tflagTrim      uint16 = 1 << 5
	tflagZeroes    uint16 = 1 << 6
	tflagDF        uint16 = 1 << 7
	tflagMultiConn uint16 = 1 << 8
	tflagCache     uint16 = 1 << 10
	tflagFastZero  uint16 = 1 << 11
)

// Transmission magics.
const (
	requestMagic    uint32 = 0x25609513
	simpleMagic     uint32 = 0x67446698
	structuredMagic uint32 = 0x668e33ef
	requestSize            = 28
	simpleSize             = 16
	structHdrSize          = 20
)

// Commands.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
)

// Command flags.
const (
	cmdFlagFUA        uint16 = 1 << 0
	cmdFlagNoHole     uint16 = 1 << 1
	cmdFlagDF         uint16 = 1 << 2
	cmdFlagReqOne     uint16 = 1 << 3
	cmdFlagFastZero   uint16 = 1 << 4
	cmdFlagPayloadLen uint16 = 1 << 5
)

// Structured reply chunk types and flags.
const (
	chunkFlagDone    uint16 = 1 << 0
	chunkNone        uint16 = 0
	chunkOffsetData  uint16 = 1
	chunkOffsetHole  uint16 = 2
	chunkBlockStatus uint16 = 5
	chunkError       uint16 = 1<<15 | 1
	chunkErrorOffset uint16 = 1<<15 | 2
)

// Errno values on the wire (the protocol's, not the host's).
const (
	ePERM     uint32 = 1
	eIO       uint32 = 5
	eNOMEM    uint32 = 12
	eINVAL    uint32 = 22
	eNOSPC    uint32 = 28
	eOVERFLOW uint32 = 75
	eNOTSUP   uint32 = 95
	eSHUTDOWN uint32 = 108
)

// MaxPayload is the largest READ or WRITE payload the server accepts; the
// protocol says 32 MiB must never be treated as an attack.
const MaxPayload = 32 << 20
