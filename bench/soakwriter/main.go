// Command soakwriter is the verifying write load of bench/soak.sh (issue 9, items A and G): it writes
// to an NBD export through our own NBD client, logs every request before it is sent and every
// acknowledgement before it goes on, and after a crash or a link cut checks the volume (and its
// replica) against what the log says must be there.
//
//	soakwriter write  --uri URI --log FILE --session N [--depth 4] [--duration 0] [--fault-drop-after N]
//	soakwriter verify --uri URI --state FILE --log FILE [--replica PATH] [--bitmap NAME] [--strict]
//
// The log is text, one record a line, each written with one write(2) (and fdatasync with
// --fsync-log) before the writer moves on, so it survives the writer and the daemon dying:
//
//	S SESSION BLOCKSIZE                  a writer session starts (the CBT bitmap was cleared before it)
//	I SEQ KIND FUA BLOCK NBLOCKS         a request is about to be sent (KIND: W write, Z write zeroes,
//	                                     T trim, F flush)
//	A SEQ                                its reply said success
//	E SEQ MESSAGE                        its reply said error, or the connection failed under it
//	# TEXT                               a comment (the fault injection says what it did)
//
// Every 4 KiB block a write puts down is unique: its first 16 bytes hold the write's SEQ and the
// block number, the rest a stream seeded by both, so a read tells which write a block holds.
// A write is durable when it had FUA, or when a FLUSH was sent after its acknowledgement (its I
// line comes after the write's A line) and that FLUSH was acknowledged. The writer never has two
// requests in flight on one block, so the requests on a block are ordered by their I lines; the
// content a block may hold after a crash is that of its last durable request or of any request
// after it (a trim: zeros or what was there before). verify reads every block, checks it against
// those candidates, and records what it found as the baseline (the state file) for the next
// session; see verify.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = runWrite(os.Args[2:])
	case "verify":
		err = runVerify(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soakwriter %s: %v\n", os.Args[1], err)
		if e, ok := err.(exitError); ok {
			os.Exit(e.code)
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: soakwriter write|verify [flags] (soakwriter write -h for the flags)")
	os.Exit(2)
}

// exitError carries a specific exit status: the harness tells "the daemon died under the writer"
// (expected in a crash trial) from "the writer is broken".
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
