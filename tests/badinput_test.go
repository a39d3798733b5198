//go:build integration

package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// badInputDiskSize is the size of the volume the malformed requests go to.
const badInputDiskSize = 64 << 20

// TestBadInput (issue 2, "Must show" 3): a raw socket client sends malformed handshakes and
// requests to the real daemon, on its unix socket and on its TCP port. Every error gets the reply
// the protocol defines (or, where none exists, the connection is closed), a connection that got an
// error reply is still in step, and meanwhile a verifying fio load on another volume runs
// undisturbed and the daemon neither exits nor panics.
func TestBadInput(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("disk", "64M")
	d.CreateVolume("ro", "16M", "--read-only")
	d.CreateVolume("load", "64M")
	load := startFioLoop(t, d.URIs("load"))
	waitConnected(t, d, "load") // the load is on the wire before the first bad byte is sent

	for _, tr := range []struct{ name, network, addr string }{
		{"Unix", "unix", d.nbdSock()},
		{"TCP", "tcp", d.tcpAddr()},
	} {
		dial := func(t *testing.T) *nbdraw.Conn { return nbdraw.Dial(t, tr.network, tr.addr) }
		t.Run(tr.name, func(t *testing.T) {
			t.Run("Handshake", func(t *testing.T) { testBadHandshakes(t, dial) })
			t.Run("Requests", func(t *testing.T) { testBadRequests(t, dial) })
			t.Run("Connections", func(t *testing.T) { testBadConnections(t, dial) })
		})
	}

	runs := load.wait()
	for _, r := range runs {
		if r.err != nil {
			t.Errorf("concurrent fio run %d on volume load: %v:\n%s", r.n, r.err, r.out)
		}
	}
	t.Logf("%d verifying fio runs on volume load completed during the bad input", len(runs))
	checkDaemonHealthy(t, d)
	// A well-behaved client after all that, on both transports.
	for i, uri := range d.URIs("disk") {
		p := 0x61 + i
		qemuIO(t, uri, fmt.Sprintf("write -P %#x 1M 64k", p), "flush", fmt.Sprintf("read -P %#x 1M 64k", p))
	}
}

// testBadHandshakes sends malformed handshakes; each new connection goes through dial.
func testBadHandshakes(t *testing.T, dial func(*testing.T) *nbdraw.Conn) {
	closes := []struct {
		name string
		send func(r *nbdraw.Conn)
	}{
		{"UnknownClientFlags", func(r *nbdraw.Conn) { r.ClientFlags(1 << 7) }},
		{"BadOptionMagic", func(r *nbdraw.Conn) {
			r.ClientFlags(nbdraw.CFlagFixedNew)
			r.Write(bytes.Repeat([]byte{0x42}, 16))
		}},
		{"OptionLength2GiB", func(r *nbdraw.Conn) {
			r.ClientFlags(nbdraw.CFlagFixedNew)
			r.OptionHeader(nbdraw.OptGo, 1<<31)
		}},
		// NBD_OPT_EXPORT_NAME has no error reply: the server must close.
		{"ExportNameUnknown", func(r *nbdraw.Conn) {
			r.ClientFlags(nbdraw.CFlagFixedNew)
			r.Option(nbdraw.OptExportName, []byte("nope"))
		}},
	}
	for _, c := range closes {
		t.Run(c.name, func(t *testing.T) {
			r := dial(t)
			c.send(r)
			if !r.Closed() {
				t.Fatalf("the daemon kept the connection open after %s", c.name)
			}
		})
	}

	replies := []struct {
		name string
		opt  uint32
		data []byte
		want []uint32 // acceptable final replies
	}{
		{"UnknownOption", 99, []byte("xyz"), []uint32{nbdraw.RepErrUnsup}},
		{"GoUnknownExport", nbdraw.OptGo, nbdraw.GoPayload("nope"), []uint32{nbdraw.RepErrUnknown}},
		{"InfoUnknownExport", nbdraw.OptInfo, nbdraw.GoPayload("nope"), []uint32{nbdraw.RepErrUnknown}},
		{"GoTruncated", nbdraw.OptGo, []byte{0, 0, 0, 9, 'd'}, []uint32{nbdraw.RepErrInvalid}},
		{"GoTrailingGarbage", nbdraw.OptGo, append(nbdraw.GoPayload("disk"), 1, 2, 3), []uint32{nbdraw.RepErrInvalid}},
		// A name over the protocol's 4096-byte string limit: TOO_BIG or INVALID are both errors
		// the spec allows for it.
		{"GoNameTooLong", nbdraw.OptGo, nbdraw.GoPayload(strings.Repeat("a", 5000)), []uint32{nbdraw.RepErrTooBig, nbdraw.RepErrInvalid}},
		{"ListWithData", nbdraw.OptList, []byte{1}, []uint32{nbdraw.RepErrInvalid}},
		{"MetaWithoutStructured", nbdraw.OptSetMetaContext, nbdraw.MetaPayload("disk", "base:allocation"), []uint32{nbdraw.RepErrInvalid}},
	}
	for _, c := range replies {
		t.Run(c.name, func(t *testing.T) {
			r := dial(t)
			r.ClientFlags(nbdraw.CFlagFixedNew)
			r.Option(c.opt, c.data)
			if res := r.FinalReply(c.opt); !slices.Contains(c.want, res.Final) {
				t.Fatalf("reply %#x %q, want one of %#x", res.Final, res.Message, c.want)
			}
			// The session goes on: a good GO still gets into transmission, and a read works.
			r.Option(nbdraw.OptGo, nbdraw.GoPayload("disk"))
			res := r.FinalReply(nbdraw.OptGo)
			if res.Final != nbdraw.RepAck {
				t.Fatalf("GO after the error: reply %#x %q, want ACK", res.Final, res.Message)
			}
			if size, _, ok := res.ExportInfo(); !ok || size != badInputDiskSize {
				t.Fatalf("GO after the error: export info size %d (present %v), want %d", size, ok, badInputDiskSize)
			}
			r.Request(nbdraw.CmdRead, 0, 7, 0, 512, nil)
			if h, e := r.SimpleReply(); h != 7 || e != 0 {
				t.Fatalf("read after GO: handle %d errno %d", h, e)
			}
		})
	}

	t.Run("List", func(t *testing.T) {
		r := dial(t)
		r.ClientFlags(nbdraw.CFlagFixedNew)
		r.Option(nbdraw.OptList, nil)
		res := r.FinalReply(nbdraw.OptList)
		slices.Sort(res.Servers)
		if got, want := res.Servers, []string{"disk", "load", "ro"}; res.Final != nbdraw.RepAck || !slices.Equal(got, want) {
			t.Fatalf("LIST: reply %#x, exports %q, want ACK and %q", res.Final, got, want)
		}
	})
	t.Run("Abort", func(t *testing.T) {
		r := dial(t)
		r.ClientFlags(nbdraw.CFlagFixedNew)
		r.Option(nbdraw.OptAbort, nil)
		// The spec lets the server ACK or just close; it must not keep the session.
		if !r.Closed() {
			t.Fatal("session still open after NBD_OPT_ABORT")
		}
	})
}

// testBadRequests sends malformed requests after a successful GO.
func testBadRequests(t *testing.T, dial func(*testing.T) *nbdraw.Conn) {
	const size = badInputDiskSize
	cases := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		length  uint32
		payload bool // send length bytes of payload
		want    uint32
	}{
		{"ReadPastEnd", nbdraw.CmdRead, 0, size - 512, 1024, false, nbdraw.EINVAL},
		{"ReadOffsetPastEnd", nbdraw.CmdRead, 0, 1 << 62, 512, false, nbdraw.EINVAL},
		{"ReadWraps", nbdraw.CmdRead, 0, ^uint64(0) - 10, 512, false, nbdraw.EINVAL},
		{"WritePastEnd", nbdraw.CmdWrite, 0, size - 512, 1024, true, nbdraw.ENOSPC},
		{"WriteOffsetPastEnd", nbdraw.CmdWrite, 0, size, 4096, true, nbdraw.ENOSPC},
		{"TrimPastEnd", nbdraw.CmdTrim, 0, size, 4096, false, nbdraw.EINVAL},
		{"ZeroPastEnd", nbdraw.CmdWriteZeroes, 0, size - 1, 2, false, nbdraw.ENOSPC},
		{"CachePastEnd", nbdraw.CmdCache, 0, size, 1, false, nbdraw.EINVAL},
		{"UnknownCommand", 42, 0, 0, 512, false, nbdraw.EINVAL},
		{"UnknownFlag", nbdraw.CmdRead, 1 << 9, 0, 512, false, nbdraw.EINVAL},
		{"NoHoleOnWrite", nbdraw.CmdWrite, nbdraw.CmdFlagNoHole, 0, 512, true, nbdraw.EINVAL},
		{"DFWithoutStructured", nbdraw.CmdRead, nbdraw.CmdFlagDF, 0, 512, false, nbdraw.EINVAL},
		{"OversizeWrite", nbdraw.CmdWrite, 0, 0, nbdraw.MaxPayload + 4096, true, nbdraw.EINVAL},
		{"OversizeRead", nbdraw.CmdRead, 0, 0, nbdraw.MaxPayload + 4096, false, nbdraw.EINVAL},
		{"FlushWithRange", nbdraw.CmdFlush, 0, 4096, 1, false, nbdraw.EINVAL},
		{"BlockStatusWithoutMeta", nbdraw.CmdBlockStatus, 0, 0, 4096, false, nbdraw.EINVAL},
	}
	r := dial(t)
	if gotSize, _ := r.Open("disk", false); gotSize != size {
		t.Fatalf("GO disk: size %d, want %d", gotSize, size)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p []byte
			if c.payload {
				p = make([]byte, c.length)
			}
			h := uint64(1000 + i)
			r.Request(c.typ, c.flags, h, c.off, c.length, p)
			gh, errno := r.SimpleReply()
			if gh != h || errno != c.want {
				t.Fatalf("reply handle %d errno %d, want handle %d errno %d", gh, errno, h, c.want)
			}
			// Still in step: the payload (if any) was consumed, the next requests parse.
			r.RoundTrip(4096, [4]byte{byte(i), 2, 3, 4})
		})
	}

	t.Run("WriteToReadOnly", func(t *testing.T) {
		ro := dial(t)
		if _, flags := ro.Open("ro", false); flags&nbdraw.TFlagReadOnly == 0 {
			t.Errorf("GO ro: transmission flags %#x lack NBD_FLAG_READ_ONLY", flags)
		}
		for _, typ := range []uint16{nbdraw.CmdWrite, nbdraw.CmdTrim, nbdraw.CmdWriteZeroes} {
			var p []byte
			if typ == nbdraw.CmdWrite {
				p = make([]byte, 512)
			}
			ro.Request(typ, 0, 5, 0, 512, p)
			if h, e := ro.SimpleReply(); h != 5 || e != nbdraw.EPERM {
				t.Fatalf("command %d on the read-only volume: handle %d errno %d, want EPERM (%d)", typ, h, e, nbdraw.EPERM)
			}
		}
		ro.Request(nbdraw.CmdRead, 0, 6, 0, 512, nil)
		if h, e := ro.SimpleReply(); h != 6 || e != 0 {
			t.Fatalf("read on the read-only volume: handle %d errno %d", h, e)
		}
	})
	t.Run("StructuredReadPastEnd", func(t *testing.T) {
		sr := dial(t)
		sr.Open("disk", true)
		sr.Request(nbdraw.CmdRead, 0, 9, size, 512, nil)
		flags, typ, h, p := sr.Chunk()
		if typ != nbdraw.ChunkError || flags&nbdraw.ChunkFlagDone == 0 || h != 9 || len(p) < 4 || binary.BigEndian.Uint32(p) != nbdraw.EINVAL {
			t.Fatalf("chunk flags %#x type %#x handle %d payload %x, want a final NBD_REPLY_TYPE_ERROR EINVAL for handle 9",
				flags, typ, h, p)
		}
	})
	t.Run("BadRequestMagic", func(t *testing.T) {
		bm := dial(t)
		bm.Open("disk", false)
		bm.Write(make([]byte, nbdraw.RequestSize))
		if !bm.Closed() {
			t.Fatal("the daemon kept a connection whose request stream is out of step")
		}
	})
	t.Run("DiscAfterWrite", func(t *testing.T) {
		dc := dial(t)
		dc.Open("disk", false)
		dc.Request(nbdraw.CmdWrite, nbdraw.CmdFlagFUA, 11, 8192, 4, []byte{9, 8, 7, 6})
		dc.Request(nbdraw.CmdDisc, 0, 12, 0, 0, nil)
		if h, e := dc.SimpleReply(); h != 11 || e != 0 {
			t.Fatalf("write before DISC: handle %d errno %d", h, e)
		}
		if !dc.Closed() {
			t.Fatal("connection open after NBD_CMD_DISC")
		}
		check := dial(t)
		check.Open("disk", false)
		check.Request(nbdraw.CmdRead, 0, 13, 8192, 4, nil)
		if h, e := check.SimpleReply(); h != 13 || e != 0 {
			t.Fatalf("read after DISC: handle %d errno %d", h, e)
		}
		var got [4]byte
		check.Read(got[:])
		if got != [4]byte{9, 8, 7, 6} {
			t.Fatalf("the write before DISC reads back %x, want 09080706", got)
		}
	})
}

// testBadConnections drops connections at awkward moments; the daemon must shrug them off (the
// final health check and the next test prove it).
func testBadConnections(t *testing.T, dial func(*testing.T) *nbdraw.Conn) {
	t.Run("HangUpAfterGreeting", func(t *testing.T) {
		dial(t).NC.Close()
	})
	t.Run("HangUpMidOption", func(t *testing.T) {
		r := dial(t)
		r.ClientFlags(nbdraw.CFlagFixedNew)
		r.OptionHeader(nbdraw.OptGo, 100)
		r.Write([]byte("0123456789"))
		r.NC.Close()
	})
	t.Run("HangUpMidWritePayload", func(t *testing.T) {
		r := dial(t)
		r.Open("disk", false)
		r.Request(nbdraw.CmdWrite, 0, 1, 0, 1<<20, make([]byte, 1000))
		r.NC.Close()
	})
	t.Run("HangUpWithReadsInFlight", func(t *testing.T) {
		r := dial(t)
		r.Open("disk", false)
		for h := range uint64(16) {
			r.Request(nbdraw.CmdRead, 0, h, h<<20, 1<<20, nil)
		}
		r.NC.Close()
	})
	t.Run("StillServing", func(t *testing.T) {
		r := dial(t)
		r.Open("disk", false)
		r.RoundTrip(12288, [4]byte{0xa, 0xb, 0xc, 0xd})
	})
}

// fioLoop runs back-to-back verifying fio jobs (runFio) until wait is called, cycling through
// uris, so that a load is in flight for the whole of a test.
type fioLoop struct {
	stop atomic.Bool
	done chan []fioRun
	once sync.Once
	runs []fioRun // set by the first wait
}

func startFioLoop(t *testing.T, uris []string) *fioLoop {
	l := &fioLoop{done: make(chan []fioRun, 1)}
	go func() {
		var runs []fioRun
		for i := 0; i == 0 || !l.stop.Load(); i++ {
			r := runFio(t.Context(), uris[i%len(uris)], i)
			runs = append(runs, r)
			if r.err != nil {
				break
			}
		}
		l.done <- runs
	}()
	t.Cleanup(func() { l.wait() }) // a test that failed early still reaps the loop
	return l
}

// wait stops the loop after the run in progress and returns every run.
func (l *fioLoop) wait() []fioRun {
	l.once.Do(func() {
		l.stop.Store(true)
		l.runs = <-l.done
	})
	return l.runs
}

// waitConnected polls `volume show --json` until the volume has an open NBD connection.
func waitConnected(t *testing.T, d *daemon, vol string) {
	t.Helper()
	// A watchdog: a loaded machine can take a while to start the client.
	deadline := time.Now().Add(3 * readyTimeout)
	for {
		v := showVolume(t, d, vol)
		if v.Connections > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NBD connection on volume %s within %v", vol, 3*readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDaemonHealthy fails the test if the daemon's process has exited or its log shows a panic
// or a device contract violation (a bad request that got past the NBD server's checks).
func checkDaemonHealthy(t *testing.T, d *daemon) {
	t.Helper()
	select {
	case <-d.exited:
		t.Fatalf("the daemon has exited: %v", d.waitErr)
	default:
	}
	log, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"panic", "goroutine ", "contract violation"} {
		if i := bytes.Index(bytes.ToLower(log), []byte(bad)); i >= 0 {
			t.Errorf("daemon log contains %q: %s", bad, firstLine(log[i:]))
		}
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
