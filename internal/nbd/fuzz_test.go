package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/memdev"
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
	f.Add(goPayload("disk"))
	f.Add(append(goPayload("x")[:5], 0, 2, 0, 1, 0, 3))
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

// FuzzSession feeds an arbitrary client byte stream to a real server
// connection: the server must neither panic nor hang.
func FuzzSession(f *testing.F) {
	hs := binary.BigEndian.AppendUint32(nil, cflagFixedNew|cflagNoZeroes)
	opt := func(o uint32, d []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, optMagic)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
		return append(b, d...)
	}
	req := func(typ, flags uint16, off uint64, n uint32) []byte {
		var b [requestSize]byte
		encodeRequest(b[:], request{typ: typ, flags: flags, handle: 3, off: off, length: n})
		return b[:]
	}
	seed := append(append([]byte{}, hs...), opt(optStructuredReply, nil)...)
	seed = append(seed, opt(optSetMetaContext, metaPayload("disk", "base:allocation"))...)
	seed = append(seed, opt(optGo, goPayload("disk"))...)
	f.Add(append(append(append([]byte{}, seed...), req(cmdBlockStatus, 0, 0, 1<<20)...), req(cmdRead, cmdFlagDF, 0, 4096)...))
	f.Add(append(append(append([]byte{}, seed...), req(cmdWrite, cmdFlagFUA, 512, 4)...), 1, 2, 3, 4))
	f.Add(append(append([]byte{}, hs...), opt(optList, nil)...))
	f.Add(append(append([]byte{}, hs...), opt(optInfo, goPayload("ro"))...))

	f.Fuzz(func(t *testing.T, in []byte) {
		exp := &testExports{devs: map[string]*Export{
			"disk": {Name: "disk", Device: memdev.New(1<<20, false)},
			"ro":   {Name: "ro", Device: memdev.New(1<<20, false), ReadOnly: true},
		}}
		srv := NewServer(exp, Options{HandshakeTimeout: 2 * time.Second})
		cli, sv := net.Pipe()
		c := newConn(srv, sv)
		done := make(chan struct{})
		go func() { defer close(done); c.serve() }()
		go io.Copy(io.Discard, cli)
		cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cli.Write(in)
		cli.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection did not end after the client closed")
		}
	})
}
