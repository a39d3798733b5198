package nbd

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// acceptBackoffMin is the first pause after a failed accept.
const acceptBackoffMin = 5 * time.Millisecond

// acceptBackoff paces a listener through a streak of accept errors (out of
// descriptors, ECONNABORTED, a network error): it waits, doubling up to
// acceptBackoffMax, and logs the first error of a streak and then once per
// refusalLogEvery, with how many it saw.
type acceptBackoff struct {
	delay  time.Duration
	logged time.Time // when the streak was last logged
	errs   int       // errors since then
}

func (b *acceptBackoff) wait(log *slog.Logger, err error) {
	if b.delay == 0 {
		b.delay = acceptBackoffMin
	}
	b.errs++
	if now := time.Now(); b.logged.IsZero() || now.Sub(b.logged) >= refusalLogEvery {
		log.Warn("nbd accept failed: retrying; if this repeats, raise the open file limit or lower --nbd-max-conns",
			"err", err, "errors", b.errs, "retry_in", b.delay)
		b.logged, b.errs = now, 0
	}
	time.Sleep(b.delay)
	b.delay = min(b.delay*2, acceptBackoffMax)
}

func (b *acceptBackoff) reset() {
	if b.delay != 0 {
		*b = acceptBackoff{}
	}
}

// peerKey is the client address a connection counts against for
// MaxConnsPerClient: the IPv4 address, or the /64 of an IPv6 one (a host
// gets a whole /64, so counting single IPv6 addresses caps nothing).
//
// Unix socket clients return "" and are capped only by MaxConns: the socket
// is the local hypervisor's door (mode 0660), where one uid (QEMU's) holds
// one connection per VM disk, and its users may already read and write
// every disk, so a per-uid cap would break large hosts and protect nothing.
func peerKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// refusalLog logs a refused connection once per client address per
// refusalLogEvery, remembering at most maxRefusalPeers addresses; refusals
// beyond that are summed into one line per period.
type refusalLog struct {
	mu         sync.Mutex           // guards last, others, othersSent
	last       map[string]time.Time // address -> when its refusal was last logged
	others     int                  // refusals not logged since othersSince
	othersSent time.Time            // when the summary was last logged
}

func newRefusalLog() *refusalLog { return &refusalLog{last: map[string]time.Time{}} }

// allow reports whether a refusal under key may be logged at now, and
// records it if so. Past maxRefusalPeers remembered keys it counts the
// refusal instead; summary is then that count once per refusalLogEvery
// (0 otherwise), for one summing line.
func (r *refusalLog) allow(key string, now time.Time) (ok bool, summary int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, seen := r.last[key]; seen && now.Sub(t) < refusalLogEvery {
		return false, 0
	}
	if len(r.last) >= maxRefusalPeers {
		for k, t := range r.last {
			if now.Sub(t) >= refusalLogEvery {
				delete(r.last, k)
			}
		}
	}
	if len(r.last) >= maxRefusalPeers {
		r.others++
		if now.Sub(r.othersSent) < refusalLogEvery {
			return false, 0
		}
		n := r.others
		r.others, r.othersSent = 0, now
		return false, n
	}
	r.last[key] = now
	return true, 0
}

// log logs a connection refused over a cap, rate-limited by allow.
func (r *refusalLog) log(log *slog.Logger, addr net.Addr, key, reason string) {
	if key == "" {
		key = addr.Network() // one entry for every unix socket client
	}
	ok, n := r.allow("cap "+key, time.Now())
	if n > 0 {
		log.Warn("nbd connections refused: over a connection cap", "refused", n, "reason", reason)
	}
	if ok {
		log.Warn("nbd connection refused: over a connection cap (further refusals of this address are logged once a minute)",
			"remote", addr.String(), "reason", reason)
	}
}
