package node

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
)

// CodeTTL is how long a pairing code works: long enough to read it on one
// host and type it on another, short enough that a code seen in a
// terminal's scroll-back or a ticket later is worthless.
const CodeTTL = 15 * time.Minute

// maxPendingCodes bounds the codes that work at one time: each `node
// show` makes one, and an operator needs one or two; minting more drops
// the oldest, so the set (and the work of checking a secret) stays small.
const maxPendingCodes = 8

// pendingCode is a pairing secret that has not been used yet.
type pendingCode struct {
	secret  string    // uppercase base32
	expires time.Time // it fails from this instant on
}

// PairingCode is a fresh pairing code and the instant it stops working.
type PairingCode struct {
	Code    string    // "<fingerprint-hex>-<secret>", as ParseCode reads it
	Expires time.Time // the code fails from this instant on
}

// NewPairingCode makes a pairing code for this node: it works for one
// pairing, within CodeTTL. Making codes does not revoke the earlier ones
// (up to maxPendingCodes, oldest dropped first).
func (s *Service) NewPairingCode() (PairingCode, error) {
	secret, err := newSecret()
	if err != nil {
		return PairingCode{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == nil {
		return PairingCode{}, ErrNoIdentity
	}
	now := s.now()
	s.dropExpiredCodes(now)
	for len(s.codes) >= maxPendingCodes {
		s.removeCode(0) // the oldest
	}
	pc := pendingCode{secret: secret, expires: now.Add(CodeTTL)}
	s.codes = append(s.codes, pc)
	return PairingCode{Code: strings.TrimPrefix(s.id.Fingerprint, fingerprintPrefix) + "-" + secret, Expires: pc.expires}, nil
}

// dropExpiredCodes forgets the codes that expired at now; s.mu is held.
func (s *Service) dropExpiredCodes(now time.Time) {
	kept := s.codes[:0]
	for _, c := range s.codes {
		if now.Before(c.expires) {
			kept = append(kept, c)
		}
	}
	clear(s.codes[len(kept):]) // no stale secret stays in the backing array
	s.codes = kept
}

// verifyPairSecret checks a pairing secret against this node's pending
// codes and uses up the one it matches: a code pairs once. At most one
// wrong secret is checked per pairRetryDelay: within that delay of a wrong
// one, every attempt fails with ErrRateLimited unchecked. A wrong, used or
// expired secret wraps ErrBadCode.
func (s *Service) verifyPairSecret(secret string) (*Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == nil {
		return nil, ErrNoIdentity
	}
	now := s.now()
	if now.Before(s.pairAfter) {
		return nil, ErrRateLimited
	}
	s.dropExpiredCodes(now)
	got := []byte(strings.ToUpper(strings.TrimSpace(secret)))
	match := -1
	for i, c := range s.codes {
		// Every pending code is compared, in constant time each, so the
		// time taken says nothing about which one (if any) matched.
		if subtle.ConstantTimeCompare(got, []byte(c.secret)) == 1 {
			match = i
		}
	}
	if match < 0 {
		s.pairAfter = now.Add(pairRetryDelay)
		return nil, fmt.Errorf("%w: wrong, used or expired code (a code pairs once, within %v); run `extrasphere node show` on %s for a fresh one",
			ErrBadCode, CodeTTL, s.id.Name)
	}
	s.removeCode(match)
	return s.id, nil
}

// removeCode forgets code i, leaving no copy of its secret behind in the
// backing array; s.mu is held.
func (s *Service) removeCode(i int) {
	last := len(s.codes) - 1
	copy(s.codes[i:], s.codes[i+1:])
	s.codes[last] = pendingCode{}
	s.codes = s.codes[:last]
}
