package api

import (
	"net"
	"sync"
	"time"
)

// refusalLogEvery is how often refusals of one client address are logged:
// enough to see who is knocking, not one line per request of a flood.
const refusalLogEvery = time.Minute

// maxRefusalHosts bounds the addresses remembered for refusalLogEvery; a
// flood from more addresses than this forgets them all and starts again
// (a few extra log lines, never unbounded memory).
const maxRefusalHosts = 4096

// logLimiter says whether to log an event of a client address now.
type logLimiter struct {
	mu   sync.Mutex           // guards last
	last map[string]time.Time // address -> when its last event was logged
}

// allow reports whether an event of host at now may be logged, and if so
// records it.
func (l *logLimiter) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[host]; ok && now.Sub(t) < refusalLogEvery {
		return false
	}
	if l.last == nil || len(l.last) >= maxRefusalHosts {
		l.last = make(map[string]time.Time)
	}
	l.last[host] = now
	return true
}

// remoteHost is the host of a request's RemoteAddr ("" for unix sockets).
func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
