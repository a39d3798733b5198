package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

func FuzzRequest(f *testing.F) {
	var b [requestSize]byte
	encodeRequest(b[:], request{typ: cmdRead, handle: 1, off: 0, length: 512})
	f.Add(b[:], uint64(1<<20), false, false)
	encodeRequest(b[:], request{typ: cmdBlockStatus, flags: cmdFlagReqOne, off: 4096, length: 1 << 30})
	f.Add(b[:], uint64(1<<20), true, true)
	encodeRequest(b[:], request{typ: cmdWriteZeroes, flags: cmdFlagFastZero | cmdFlagNoHole, off: ^uint64(0), length: ^uint32(0)})
	f.Add(b[:], uint64(1<<40), true, false)
	f.Fuzz(func(t *testing.T, b []byte, size uint64, structured, ro bool) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		var back [requestSize]byte
		encodeRequest(back[:], r)
		if !bytes.Equal(back[:], b[:requestSize]) {
			t.Fatalf("round trip %x != %x", back, b[:requestSize])
		}
		s := session{size: size, structured: structured, readOnly: ro, minBlock: 1, maxPayload: MaxPayload, haveMeta: structured}
		if validateRequest(r, s) == 0 && r.typ != cmdDisc && r.typ != cmdFlush {
			if r.off+uint64(r.length) > size || r.off+uint64(r.length) < r.off {
				t.Fatalf("accepted out-of-range request %+v on size %d", r, size)
			}
		}
	})
}

func FuzzInfoRequest(f *testing.F) {
	f.Add(nbdraw.GoPayload("disk"))
	f.Add(append(nbdraw.GoPayload("x")[:5], 0, 2, 0, 1, 0, 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseInfoRequest(b)
		if err == nil && len(r.name) > maxStringLen {
			t.Fatalf("accepted a %d-byte name", len(r.name))
		}
	})
}

func FuzzMetaRequest(f *testing.F) {
	f.Add(metaPayload("disk", "base:allocation"))
	f.Add(metaPayload("", "base:", "qemu:dirty-bitmap:b0"))
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseMetaRequest(b)
		if err != nil {
			return
		}
		for _, q := range r.queries {
			if len(q) > maxStringLen {
				t.Fatalf("accepted a %d-byte query", len(q))
			}
		}
		matchMeta([]string{"base:allocation"}, r.queries, true)
		matchMeta([]string{"base:allocation"}, r.queries, false)
	})
}

// Fuzzing a real server connection: the option phase and the
// transmission phase each get a target that drives newConn(...).serve()
// over net.Pipe with arbitrary client bytes. fuzzConn asserts what must
// hold whatever the bytes: no panic, the connection ends once the client
// closed, no goroutine outlives it, no budget ticket is left held, and
// (option phase) no option buffer was sized beyond the option limits.
// Run each for 10 minutes:
//
//	go test ./internal/nbd -run '^$' -fuzz '^FuzzOptionPhase$' -fuzztime 10m -parallel 1
//	go test ./internal/nbd -run '^$' -fuzz '^FuzzTransmission$' -fuzztime 10m -parallel 1

// The fuzzing engine kills a worker whose input runs for 10 s ("deadlocked!")
// and then reports only that it died; these watchdogs keep one input well
// under that, so a hang becomes a test failure that says what hung. A
// connection must end within fuzzEndWatchdog of the client closing, and its
// goroutines be gone within fuzzLeakWatchdog of that.
const (
	fuzzEndWatchdog  = 5 * time.Second
	fuzzLeakWatchdog = 2 * time.Second
)

// fuzzOpt encodes one option.
func fuzzOpt(o uint32, d []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, optMagic)
	b = binary.BigEndian.AppendUint32(b, o)
	b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
	return append(b, d...)
}

// fuzzReq encodes one request header.
func fuzzReq(typ, flags uint16, off uint64, n uint32) []byte {
	var b [requestSize]byte
	encodeRequest(b[:], request{typ: typ, flags: flags, handle: 3, off: off, length: n})
	return b[:]
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var fuzzHello = binary.BigEndian.AppendUint32(nil, cflagFixedNew|cflagNoZeroes)

// fuzzConn runs one server connection fed with in and checks the
// invariants above. It returns the connection, for checks of what it did.
func fuzzConn(t *testing.T, in []byte) *conn {
	exp := &testExports{devs: map[string]*Export{
		"disk": {Name: "disk", Device: memdev.New(1<<20, false)},
		"ro":   {Name: "ro", Device: memdev.New(1<<20, false), ReadOnly: true},
	}}
	srv := NewServer(exp, Options{HandshakeTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MemoryBytes: MinMemoryBytes})

	cli, sv := net.Pipe()
	c := newConn(srv, sv)
	done := make(chan struct{})
	go func() { defer close(done); c.serve() }()
	drained := make(chan struct{})
	go func() { defer close(drained); io.Copy(io.Discard, cli) }()
	cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
	cli.Write(in)
	cli.Close()
	select {
	case <-done:
	case <-time.After(fuzzEndWatchdog):
		t.Fatalf("connection did not end within %v of the client closing:\n%s", fuzzEndWatchdog, connStacks())
	}
	<-drained
	if n := srv.MemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of the memory budget still held after the connection ended", n)
	}
	// Every goroutine of the connection was joined before serve returned,
	// except the export-removal watcher, which ends with the connection's
	// ctx: wait for them all, with a watchdog. (The process's goroutine
	// count is no measure: the fuzzing engine starts goroutines of its own.)
	for deadline := time.Now().Add(fuzzLeakWatchdog); ; {
		st := connStacks()
		if st == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of the connection outlived it:\n%s", st)
		}
		time.Sleep(time.Millisecond)
	}
	return c
}

// stackBuf is connStacks' buffer, reused: one input's check must not cost a
// large allocation.
var (
	stackMu  sync.Mutex // guards stackBuf
	stackBuf [256 << 10]byte
)

// connStacks returns the stacks of the goroutines running server code
// (a connection, its transmission, or a server), or "".
func connStacks() string {
	stackMu.Lock()
	defer stackMu.Unlock()
	buf := stackBuf[:runtime.Stack(stackBuf[:], true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/nbd.(*conn)") || strings.Contains(g, "internal/nbd.(*transmission)") ||
			strings.Contains(g, "internal/nbd.(*Server)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// FuzzOptionPhase feeds arbitrary bytes as the negotiation: whatever the
// options say, the server allocates only what their limits allow.
func FuzzOptionPhase(f *testing.F) {
	f.Add(cat(fuzzHello, fuzzOpt(optList, nil), fuzzOpt(optInfo, nbdraw.GoPayload("ro"))))
	f.Add(cat(fuzzHello, fuzzOpt(optStructuredReply, nil), fuzzOpt(optListMetaContext, metaPayload("disk")), fuzzOpt(optAbort, []byte{1})))
	f.Add(cat(fuzzHello, fuzzOpt(optGo, make([]byte, maxGoData+1)), fuzzOpt(99, []byte("xyz"))))
	f.Add(cat(fuzzHello, fuzzOpt(optStartTLS, nil), fuzzOpt(optSetMetaContext, metaPayload("disk", "base:allocation"))))
	huge := fuzzOpt(optSetMetaContext, nil)
	binary.BigEndian.PutUint32(huge[12:], 1<<30)
	f.Add(cat(fuzzHello, huge))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := fuzzConn(t, in)
		// What the options said never sized a buffer beyond their limits:
		// every option buffer is at most the largest limit, and their sum
		// at most one per option header the input holds.
		if c.optBiggest > maxMetaData {
			t.Fatalf("an option buffer of %d bytes, over the largest option limit %d", c.optBiggest, maxMetaData)
		}
		if limit := int64(len(in)/16+1) * maxMetaData; c.optBytes > limit {
			t.Fatalf("%d bytes of option buffers for %d bytes of input, over %d", c.optBytes, len(in), limit)
		}
	})
}

// FuzzTransmission negotiates into transmission (mode picks how: GO with
// or without structured replies and a meta context, EXPORT_NAME after
// STRUCTURED_REPLY, a read-only export), then feeds arbitrary bytes as
// requests.
func FuzzTransmission(f *testing.F) {
	f.Add(uint8(0), cat(fuzzReq(cmdBlockStatus, 0, 0, 1<<20), fuzzReq(cmdRead, cmdFlagDF, 0, 4096)))
	f.Add(uint8(1), cat(fuzzReq(cmdWrite, cmdFlagFUA, 512, 4), []byte{1, 2, 3, 4}, fuzzReq(cmdFlush, 0, 0, 0)))
	f.Add(uint8(2), cat(fuzzReq(cmdCache, 0, 0, 1<<20), fuzzReq(cmdRead, 0, 4096, 4096), fuzzReq(cmdDisc, 0, 0, 0)))
	f.Add(uint8(3), cat(fuzzReq(cmdWrite, 0, 0, 8), []byte{1}, fuzzReq(cmdTrim, 0, 0, 4096)))
	f.Add(uint8(0), cat(fuzzReq(cmdWriteZeroes, cmdFlagFastZero|cmdFlagNoHole, 0, 1<<20), fuzzReq(cmdRead, 0, 0, MaxPayload)))
	f.Fuzz(func(t *testing.T, mode uint8, in []byte) {
		var pre []byte
		switch mode % 4 {
		case 0:
			pre = cat(fuzzHello, fuzzOpt(optStructuredReply, nil), fuzzOpt(optSetMetaContext, metaPayload("disk", "base:allocation")), fuzzOpt(optGo, nbdraw.GoPayload("disk")))
		case 1:
			pre = cat(fuzzHello, fuzzOpt(optGo, nbdraw.GoPayload("disk")))
		case 2:
			pre = cat(fuzzHello, fuzzOpt(optStructuredReply, nil), fuzzOpt(optSetMetaContext, metaPayload("disk", "base:allocation")), fuzzOpt(optExportName, []byte("disk")))
		case 3:
			pre = cat(fuzzHello, fuzzOpt(optGo, nbdraw.GoPayload("ro")))
		}
		fuzzConn(t, cat(pre, in))
	})
}
