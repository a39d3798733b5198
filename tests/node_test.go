//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// pairNodes pairs a with b (mutual trust), as an admin would: the code comes from `node show` on b.
func pairNodes(t *testing.T, a, b *daemon) {
	t.Helper()
	var show struct {
		Code string `json:"pairing_code"`
	}
	if err := json.Unmarshal([]byte(b.CLI("node", "show", "--json")), &show); err != nil || show.Code == "" {
		t.Fatalf("node show --json: %v (code %q)", err, show.Code)
	}
	a.CLI("node", "pair", b.nodeAddr(), "--code", show.Code)
}

// netnsSeq keeps namespace and link names unique across tests of one run; newNetLink also skips
// numbers whose namespace exists already (another test run on the same machine holds it).
var netnsSeq atomic.Int64

// netLink is a network namespace joined to the root namespace by a veth pair: the root side has
// HostIP, the namespace side NSIP. Down and Up cut and restore the link (no RST is sent: like a
// pulled cable).
type netLink struct {
	t      *testing.T
	NS     string
	HostIP string
	NSIP   string
	dev    string
}

// newNetLink makes a namespace and its link; both are removed when the test ends.
func newNetLink(t *testing.T) *netLink {
	t.Helper()
	var n int64
	for {
		// The numbers name a /24 in 10.213/16, so they stay in 1..250. `ip netns add` fails on a
		// name that exists: that claims the number atomically across processes.
		n = netnsSeq.Add(1)
		if n > 250 {
			t.Fatalf("no free network namespace number in xsp1..xsp250 (stale ones? ip netns list)")
		}
		if exec.Command("ip", "netns", "add", fmt.Sprintf("xsp%d", n)).Run() == nil {
			break
		}
	}
	l := &netLink{t: t, NS: fmt.Sprintf("xsp%d", n), dev: fmt.Sprintf("xsv%da", n),
		HostIP: fmt.Sprintf("10.213.%d.1", n), NSIP: fmt.Sprintf("10.213.%d.2", n)}
	peer := fmt.Sprintf("xsv%db", n)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", l.NS).Run()
		exec.Command("ip", "link", "del", l.dev).Run()
	})
	for _, args := range [][]string{
		{"link", "add", l.dev, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", l.NS},
		{"addr", "add", l.HostIP + "/24", "dev", l.dev},
		{"link", "set", l.dev, "up"},
		{"-n", l.NS, "addr", "add", l.NSIP + "/24", "dev", peer},
		{"-n", l.NS, "link", "set", peer, "up"},
		{"-n", l.NS, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return l
}

// Down cuts the link; Up restores it.
func (l *netLink) Down() { l.set("down") }
func (l *netLink) Up()   { l.set("up") }

func (l *netLink) set(state string) {
	l.t.Helper()
	if out, err := exec.Command("ip", "link", "set", l.dev, state).CombinedOutput(); err != nil {
		l.t.Fatalf("ip link set %s %s: %v: %s", l.dev, state, err, out)
	}
}
