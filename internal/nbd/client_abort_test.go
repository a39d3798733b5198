package nbd

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// TestResetConnSendsReset: a connection given up is reset, so the peer
// sees ECONNRESET, not an orderly end after whatever was still unsent.
func TestResetConnSendsReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resetConn(c)
	s.SetReadDeadline(time.Now().Add(10 * time.Second)) // a watchdog
	_, err = s.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the peer read %v after the reset, want ECONNRESET", err)
	}
}

// TestPoolAbort: Abort ends every connection at once; later calls fail
// with ErrClosed.
func TestPoolAbort(t *testing.T) {
	_, p := servePool(t, memdev.New(1<<20, false), false, 2)
	if err := p.WriteAt(t.Context(), []byte{1}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	for _, pc := range p.conns {
		select {
		case <-pc.c.done:
		default:
			t.Fatal("a connection's reader still runs after Abort returned")
		}
	}
	if err := p.WriteAt(t.Context(), []byte{1}, 0, 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("write after Abort: %v, want ErrClosed", err)
	}
}
