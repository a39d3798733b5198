package node

import "errors"

var (
	// ErrExists: Init found an identity already in the node directory.
	ErrExists = errors.New("node identity already exists")

	// ErrNoIdentity: the node has no identity yet (run `extrasphere node
	// init`).
	ErrNoIdentity = errors.New("this node has no identity (run `extrasphere node init`)")

	// ErrNotPaired: the peer named or presenting a certificate is not in the
	// trust store.
	ErrNotPaired = errors.New("not paired")

	// ErrBadCode: a pairing code is malformed, or its secret is wrong.
	ErrBadCode = errors.New("bad pairing code")

	// ErrFingerprintMismatch: the remote node's certificate is not the one
	// pinned (by a pairing code or the trust store): possibly a man in the
	// middle, or the other node re-created its identity.
	ErrFingerprintMismatch = errors.New("node certificate fingerprint mismatch")

	// ErrInvalidName: a node name is empty, too long, or has characters
	// other than letters, digits, '.', '-' and '_'.
	ErrInvalidName = errors.New("invalid node name")

	// ErrPeerConflict: a different node (other fingerprint) is already
	// paired under that name; unpair it first.
	ErrPeerConflict = errors.New("another node is paired under that name")

	// ErrRateLimited: too many wrong pairing secrets; try again in a second.
	ErrRateLimited = errors.New("too many wrong pairing codes, try again later")

	// ErrUnreachable: the other node could not be reached.
	ErrUnreachable = errors.New("cannot reach the other node")
)
