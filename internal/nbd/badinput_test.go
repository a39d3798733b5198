package nbd

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/nbdraw"
)

// The server answers every malformed option with the reply the protocol
// defines, and ends the session only where no reply exists.
func TestHandshakeBadInput(t *testing.T) {
	s := startServer(t)

	t.Run("UnknownClientFlags", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(1 << 7)
		if !r.ClosedSilently() {
			t.Fatal("server kept a client with unknown flags")
		}
	})
	t.Run("BadOptionMagic", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Write(bytes.Repeat([]byte{0x42}, 16))
		if !r.ClosedSilently() {
			t.Fatal("server kept a client with a bad option magic")
		}
	})
	t.Run("HugeOption", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		b := binary.BigEndian.AppendUint64(nil, optMagic)
		b = binary.BigEndian.AppendUint32(b, optGo)
		b = binary.BigEndian.AppendUint32(b, 1<<31)
		r.Write(b)
		if !r.ClosedSilently() {
			t.Fatal("server waited for a 2 GiB option")
		}
	})
	cases := []struct {
		name string
		opt  uint32
		data []byte
		want uint32
	}{
		{"UnknownOption", 99, []byte("xyz"), repErrUnsup},
		{"GoUnknownExport", optGo, nbdraw.GoPayload("nope"), repErrUnknown},
		{"InfoUnknownExport", optInfo, nbdraw.GoPayload("nope"), repErrUnknown},
		{"GoTruncated", optGo, []byte{0, 0, 0, 9, 'd'}, repErrInvalid},
		{"GoTrailingGarbage", optGo, append(nbdraw.GoPayload("disk"), 1, 2, 3), repErrInvalid},
		{"GoNameTooLong", optGo, nbdraw.GoPayload(strings.Repeat("a", 5000)), repErrTooBig},
		{"ListWithData", optList, []byte{1}, repErrInvalid},
		{"StructuredWithData", optStructuredReply, []byte{1}, repErrInvalid},
		{"MetaWithoutStructured", optSetMetaContext, metaPayload("disk", "base:allocation"), repErrInvalid},
		{"StartTLSWithoutTLS", optStartTLS, nil, repErrUnsup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s)
			r.ClientFlags(cflagFixedNew)
			r.Option(tc.opt, tc.data)
			if got := r.FinalReply(tc.opt).Final; got != tc.want {
				t.Fatalf("reply %#x, want %#x", got, tc.want)
			}
			// The session goes on: a good GO still works.
			r.Option(optGo, nbdraw.GoPayload("disk"))
			if got := r.FinalReply(optGo).Final; got != repAck {
				t.Fatalf("GO after error: %#x", got)
			}
		})
	}
	t.Run("MetaBadQueryCount", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Option(optStructuredReply, nil)
		r.OptReply(optStructuredReply)
		p := metaPayload("disk")
		binary.BigEndian.PutUint32(p[len(p)-4:], 1<<30)
		r.Option(optListMetaContext, p)
		if got := r.FinalReply(optListMetaContext).Final; got != repErrInvalid {
			t.Fatalf("reply %#x", got)
		}
	})
	t.Run("ExportNameUnknown", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Option(optExportName, []byte("nope"))
		if !r.ClosedSilently() {
			t.Fatal("no error reply exists for EXPORT_NAME: the server must close")
		}
	})
	t.Run("Abort", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(cflagFixedNew)
		r.Option(optAbort, nil)
		if typ, _ := r.OptReply(optAbort); typ != repAck {
			t.Fatalf("abort reply %#x", typ)
		}
		if !r.ClosedSilently() {
			t.Fatal("session open after abort")
		}
	})
	t.Run("ExportNameOldStyle", func(t *testing.T) {
		r := dialRaw(t, s)
		r.ClientFlags(0)
		r.Option(optExportName, []byte("disk"))
		var b [10 + exportNamePadding]byte
		r.Read(b[:])
		if got := binary.BigEndian.Uint64(b[:]); got != 64<<20 {
			t.Fatalf("size %d", got)
		}
		r.Request(cmdRead, 0, 7, 0, 512, nil)
		if h, e := r.SimpleReply(); h != 7 || e != 0 {
			t.Fatalf("read after EXPORT_NAME: handle %d errno %d", h, e)
		}
	})
}

// Every malformed request gets its errno in a reply and the connection
// stays usable.
func TestRequestBadInput(t *testing.T) {
	s := startServer(t)
	const size = 64 << 20
	cases := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		length  uint32
		payload bool
		want    uint32
	}{
		{"ReadPastEnd", cmdRead, 0, size - 512, 1024, false, eINVAL},
		{"ReadOffsetPastEnd", cmdRead, 0, 1 << 62, 512, false, eINVAL},
		{"ReadWraps", cmdRead, 0, ^uint64(0) - 10, 512, false, eINVAL},
		{"WritePastEnd", cmdWrite, 0, size - 512, 1024, true, eNOSPC},
		{"TrimPastEnd", cmdTrim, 0, size, 4096, false, eINVAL},
		{"ZeroPastEnd", cmdWriteZeroes, 0, size - 1, 2, false, eNOSPC},
		{"CachePastEnd", cmdCache, 0, size, 1, false, eINVAL},
		{"UnknownCommand", 42, 0, 0, 512, false, eINVAL},
		{"UnknownFlag", cmdRead, 1 << 9, 0, 512, false, eINVAL},
		{"NoHoleOnWrite", cmdWrite, cmdFlagNoHole, 0, 512, true, eINVAL},
		{"DFWithoutStructured", cmdRead, cmdFlagDF, 0, 512, false, eINVAL},
		{"ZeroLengthRead", cmdRead, 0, 0, 0, false, eINVAL},
		{"OversizeWrite", cmdWrite, 0, 0, MaxPayload + 4096, true, eINVAL},
		{"OversizeRead", cmdRead, 0, 0, MaxPayload + 4096, false, eINVAL},
		{"FlushWithRange", cmdFlush, 0, 4096, 1, false, eINVAL},
		{"BlockStatusWithoutMeta", cmdBlockStatus, 0, 0, 4096, false, eINVAL},
	}
	r := dialRaw(t, s)
	r.Open("disk", false)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p []byte
			if tc.payload {
				p = make([]byte, tc.length)
			}
			h := uint64(1000 + i)
			r.Request(tc.typ, tc.flags, h, tc.off, tc.length, p)
			gh, errno := r.SimpleReply()
			if gh != h || errno != tc.want {
				t.Fatalf("handle %d errno %d, want handle %d errno %d", gh, errno, h, tc.want)
			}
			// Still in step: a good write and read round trip.
			r.Request(cmdWrite, 0, 1, 4096, 4, []byte{1, 2, 3, 4})
			if _, e := r.SimpleReply(); e != 0 {
				t.Fatalf("write after bad request: errno %d", e)
			}
			r.Request(cmdRead, 0, 2, 4096, 4, nil)
			if _, e := r.SimpleReply(); e != 0 {
				t.Fatalf("read after bad request: errno %d", e)
			}
			var got [4]byte
			r.Read(got[:])
			if got != [4]byte{1, 2, 3, 4} {
				t.Fatalf("read back %v", got)
			}
		})
	}
	t.Run("WriteToReadOnly", func(t *testing.T) {
		ro := dialRaw(t, s)
		ro.Open("ro", false)
		for _, typ := range []uint16{cmdWrite, cmdTrim, cmdWriteZeroes} {
			var p []byte
			if typ == cmdWrite {
				p = make([]byte, 512)
			}
			ro.Request(typ, 0, 5, 0, 512, p)
			if _, e := ro.SimpleReply(); e != ePERM {
				t.Fatalf("cmd %d on read-only: errno %d, want EPERM", typ, e)
			}
		}
	})
	t.Run("StructuredReadPastEnd", func(t *testing.T) {
		sr := dialRaw(t, s)
		sr.Open("disk", true)
		sr.Request(cmdRead, 0, 9, size, 512, nil)
		flags, typ, h, p := sr.Chunk()
		if typ != chunkError || flags&chunkFlagDone == 0 || h != 9 || binary.BigEndian.Uint32(p) != eINVAL {
			t.Fatalf("chunk flags %d type %#x handle %d payload %x", flags, typ, h, p)
		}
	})
	t.Run("BadMagicCloses", func(t *testing.T) {
		bm := dialRaw(t, s)
		bm.Open("disk", false)
		bm.Write(make([]byte, requestSize))
		if !bm.ClosedSilently() {
			t.Fatal("server kept a connection whose stream is out of step")
		}
	})
	// The server kept serving other clients throughout.
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k", s.uri("disk"))
}
