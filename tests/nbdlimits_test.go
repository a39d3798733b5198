//go:build integration

package tests

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// The NBD server's bounds, checked against the real daemon (issue 9, C): a client that never reads
// its replies, a thousand clients that send large options, and a connection flood under a low
// descriptor limit each leave the daemon's memory bounded and a legitimate client working.

const (
	// limitsMemory is the --nbd-memory these tests give the daemon: small, so that the bound it
	// sets is far below what the hostile clients ask for (2.5 GiB for one slow reader).
	limitsMemory = 128 << 20
	// rssSlack is what the daemon may hold beyond the buffers the budget counts (code, heap
	// of its other parts, goroutines, garbage not yet collected).
	rssSlack = 64 << 20
	// dropWatchdog bounds the wait for the daemon to drop clients that stopped reading: the
	// write deadline (30 s) per wave of slow clients, twice, and room for a busy machine.
	dropWatchdog = 4 * time.Minute
	// dropLog is what the daemon logs when it drops a client that stopped reading.
	dropLog = "nbd client stopped reading replies"
)

// unracedBin is a daemon binary without the race detector: esBin, or one built for the test when
// esBin has it (the race runtime's shadow memory is several times the heap, and RSS would
// measure it).
func unracedBin(t *testing.T) string {
	t.Helper()
	bi, err := buildinfo.ReadFile(esBin)
	if err != nil {
		t.Fatalf("read the build info of %s: %v", esBin, err)
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			bin, err := buildDaemon(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return bin
		}
	}
	return esBin
}

// procStatus returns a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v) // "123456 kB"
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				t.Fatalf("/proc/%d/status %s: %q", pid, field, v)
			}
			return n << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// resetPeakRSS makes VmHWM start again from the current RSS and returns that RSS.
func resetPeakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the daemon's peak RSS: %v", err)
	}
	return procStatus(t, pid, "VmRSS")
}

// checkPeakRSS fails the test when the daemon's peak RSS grew more than allowed over base.
func checkPeakRSS(t *testing.T, pid int, base, allowed int64) {
	t.Helper()
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("daemon RSS: %d MiB before, peak %d MiB (+%d MiB, allowed +%d MiB)", base>>20, peak>>20, (peak-base)>>20, allowed>>20)
	if peak-base > allowed {
		t.Fatalf("daemon peak RSS %d MiB is %d MiB over its %d MiB before: more than the %d MiB allowed",
			peak>>20, (peak-base)>>20, base>>20, allowed>>20)
	}
}

// waitLogCount waits until the daemon's log holds want lines containing s.
func waitLogCount(t *testing.T, d *daemon, s string, want int) {
	t.Helper()
	deadline := time.Now().Add(dropWatchdog)
	for {
		b, err := os.ReadFile(d.logPath)
		if err != nil {
			t.Fatal(err)
		}
		got := bytes.Count(b, []byte(s))
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the daemon log has %d lines with %q, want %d", dropWatchdog, got, s, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slowReader opens vol on the unix socket and sends n READs of the protocol's maximal payload
// without ever reading a reply.
func slowReader(t *testing.T, d *daemon, vol string, n int) *nbdraw.Conn {
	t.Helper()
	r := nbdraw.Dial(t, "unix", d.nbdSock())
	r.NC.SetDeadline(time.Time{}) // it must not time out on its side: it never reads
	r.Open(vol, false)
	for i := range n {
		r.Request(nbdraw.CmdRead, 0, uint64(i), 0, nbdraw.MaxPayload, nil)
	}
	return r
}

// qemuIOWorks writes and reads back a pattern through qemu-io.
func qemuIOWorks(t *testing.T, uri string, pattern int) {
	t.Helper()
	p := fmt.Sprintf("%#x", pattern)
	run(t, "qemu-io", "-f", "raw", "-c", "write -P "+p+" 1M 1M", "-c", "read -P "+p+" 1M 1M", uri)
}

// A client that sends 80 READs of 32 MiB and never reads the replies is stalled within its share
// of the memory budget while another client works, and dropped after the write deadline. Then
// eight such clients at once hold no more than the whole budget, and a client works once they
// are gone.
func TestNBDSlowReaderBounded(t *testing.T) {
	d := startDaemonOpts(t, daemonOpts{Bin: unracedBin(t), Args: []string{"--nbd-memory", strconv.Itoa(limitsMemory>>20) + "M"}})
	d.CreateVolume("slow", "64M")
	pid := d.proc.Process.Pid
	base := resetPeakRSS(t, pid)

	slowReader(t, d, "slow", 80)
	qemuIOWorks(t, d.UnixURI("slow"), 0x5a)
	waitLogCount(t, d, dropLog, 1)
	checkPeakRSS(t, pid, base, limitsMemory+rssSlack)

	const many = 8
	for range many {
		slowReader(t, d, "slow", 80)
	}
	// Each takes a quarter of the budget: the first four fill it and are dropped, then the
	// other four.
	waitLogCount(t, d, dropLog, 1+many)
	qemuIOWorks(t, d.UnixURI("slow"), 0xa5)
	checkPeakRSS(t, pid, base, limitsMemory+rssSlack)
}

// A thousand clients in negotiation, each sending a large option and never finishing it (half of
// them 1 MiB, far over any option's need; half of a plausible size), leave the daemon's RSS within
// 64 MiB of what it was, and a legitimate client works meanwhile.
func TestNBDHostileOptionsBounded(t *testing.T) {
	d := startDaemonOpts(t, daemonOpts{Bin: unracedBin(t)})
	d.CreateVolume("opt", "64M")
	pid := d.proc.Process.Pid
	base := resetPeakRSS(t, pid)

	const hostile = 1000
	var held []*nbdraw.Conn
	for i := range hostile {
		r := nbdraw.Dial(t, "unix", d.nbdSock())
		r.ClientFlags(nbdraw.CFlagFixedNew | nbdraw.CFlagNoZeroes)
		if i%2 == 0 {
			// 1 MiB announced and all of it but the last byte sent, then nothing: no real client
			// sends an option that large, and a daemon that stored it would hold it all.
			r.OptionHeader(nbdraw.OptSetMetaContext, 1<<20)
			r.NC.Write(make([]byte, 1<<20-1)) // the daemon may close at the header: no check
			held = append(held, r)
			continue
		}
		// 12 KiB announced, half of it sent, then nothing: the daemon waits for the rest.
		r.OptionHeader(nbdraw.OptSetMetaContext, 12<<10)
		r.Write(make([]byte, 6<<10))
		held = append(held, r)
	}
	qemuIOWorks(t, d.UnixURI("opt"), 0x3c)
	checkPeakRSS(t, pid, base, rssSlack)
	for _, r := range held {
		r.NC.Close()
	}
	qemuIOWorks(t, d.UnixURI("opt"), 0xc3)
}

// floodWatchdog bounds one flood connection's dial: past it the dial is given up (the daemon's
// backlog is full), which is what a flood does, not a failure.
const floodWatchdog = 5 * time.Second

// Under a limit of 300 descriptors, a flood of connections from one address neither stops the NBD
// listeners nor the API: a legitimate client on the unix socket works during the flood, and one on
// either door once it ends.
func TestNBDDescriptorFloodKeepsListener(t *testing.T) {
	d := startDaemonOpts(t, daemonOpts{Wrap: []string{"prlimit", "--nofile=300:300"}})
	d.CreateVolume("fd", "64M")
	pid := d.proc.Process.Pid
	if got := procLimitNoFile(t, pid); got != 300 {
		t.Fatalf("the daemon's open file limit is %d, want 300 (prlimit)", got)
	}

	const flood = 600
	var (
		mu    sync.Mutex // guards conns
		conns []net.Conn
		wg    sync.WaitGroup
	)
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.DialTimeout("tcp", d.tcpAddr(), floodWatchdog)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d of %d flood connections were established", len(conns), flood)
	d.CLI("volume", "list") // the API still answers
	// The flood comes from one address, which gets a share of the connection cap only: the
	// local hypervisor's door still works during it.
	qemuIOWorks(t, d.UnixURI("fd"), 0x66)
	for _, nc := range conns {
		nc.Close()
	}

	// The flood is over: both listeners serve again.
	r := nbdraw.Dial(t, "tcp", d.tcpAddr())
	r.NC.Close()
	qemuIOWorks(t, d.UnixURI("fd"), 0x77)
	if !bytes.Contains(readFile(t, d.logPath), []byte("nbd connection refused")) {
		t.Fatal("the daemon did not log refusing the flood over its connection cap")
	}
}

// procLimitNoFile returns the soft open file limit of a process.
func procLimitNoFile(t *testing.T, pid int) int {
	t.Helper()
	b := readFile(t, fmt.Sprintf("/proc/%d/limits", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			n, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("/proc/%d/limits: %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/limits has no open file limit", pid)
	return 0
}

// After NBD_OPT_STRUCTURED_REPLY, NBD_OPT_EXPORT_NAME enters transmission with structured replies
// (the spec: the server MUST then use them for READ), as NBD_OPT_GO does.
func TestNBDExportNameStructuredReplies(t *testing.T) {
	const chunkOffsetData = 1  // NBD_REPLY_TYPE_OFFSET_DATA
	const tflagSendDF = 1 << 7 // NBD_FLAG_SEND_DF: offered only with structured replies
	d := startDaemon(t)
	d.CreateVolume("xn", "16M")
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x42 4096 4096", d.UnixURI("xn"))

	r := nbdraw.Dial(t, "unix", d.nbdSock())
	r.ClientFlags(nbdraw.CFlagFixedNew | nbdraw.CFlagNoZeroes)
	r.Option(nbdraw.OptStructuredReply, nil)
	if typ, _ := r.OptReply(nbdraw.OptStructuredReply); typ != nbdraw.RepAck {
		t.Fatalf("NBD_OPT_STRUCTURED_REPLY: reply %#x, want ACK", typ)
	}
	r.Option(nbdraw.OptExportName, []byte("xn"))
	var info [10]byte // size, transmission flags (no zeroes: NBD_FLAG_C_NO_ZEROES)
	r.Read(info[:])
	if flags := uint16(info[8])<<8 | uint16(info[9]); flags&tflagSendDF == 0 {
		t.Fatalf("transmission flags %#x after EXPORT_NAME lack NBD_FLAG_SEND_DF", flags)
	}
	r.Request(nbdraw.CmdRead, 0, 9, 4096, 4096, nil)
	flags, typ, h, p := r.Chunk()
	if typ != chunkOffsetData || h != 9 || flags&nbdraw.ChunkFlagDone == 0 || len(p) != 8+4096 {
		t.Fatalf("READ reply: chunk type %d flags %#x handle %d, %d bytes; want one OFFSET_DATA chunk of 8+4096", typ, flags, h, len(p))
	}
	if !bytes.Equal(p[8:], bytes.Repeat([]byte{0x42}, 4096)) {
		t.Fatal("READ after EXPORT_NAME returned other data than was written")
	}
	r.Request(nbdraw.CmdDisc, 0, 10, 0, 0, nil)
}
