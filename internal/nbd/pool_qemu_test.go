package nbd

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// qemuNBD runs qemu-nbd on file with --shared=shared, on a unix socket the
// test listens on first and hands over by socket activation (LISTEN_FDS),
// so the socket accepts before qemu-nbd starts and nothing polls. stop
// ends qemu-nbd and waits for it, so the file can be compared.
func qemuNBD(t *testing.T, file string, shared int) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "qemu-nbd.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec qemu-nbd "$@"`, "sh",
		"--shared="+strconv.Itoa(shared), "--persistent", "-f", "raw", file)
	cmd.ExtraFiles = []*os.File{lf} // fd 3
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Logf("qemu-nbd: %v\n%s", err, out.String())
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

// qemu-nbd (7.2) advertises multi-conn exactly when --shared allows more
// than one client, so --shared=4 gets a pool of 4 and --shared=1 a pool of
// 1. Writes spread over the pool land in the file exactly.
func TestPoolQemuNBD(t *testing.T) {
	for _, tc := range []struct {
		name         string
		shared, want int
	}{
		{"Shared4", 4, 4},
		{"Shared1", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "img.raw")
			const size = 16 << 20
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, size); err != nil {
				t.Fatal(err)
			}
			sock, stop := qemuNBD(t, img, tc.shared)
			p, err := DialPool(t.Context(), Target{Network: "unix", Address: sock},
				ClientOptions{MetaContexts: []string{blockdev.MetaBaseAllocation}}, 4)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := p.Conns(), tc.want; got != want {
				t.Fatalf("Conns: got %d, want %d", got, want)
			}
			if got, want := p.Caps().MultiConn, tc.want > 1; got != want {
				t.Errorf("MultiConn: got %v, want %v", got, want)
			}

			want := make([]byte, size)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 8 {
				wg.Go(func() {
					for k := range 6 {
						i := g*6 + k
						off := int64(i) * 300 << 10 // 300 KiB apart: unaligned to 64 KiB clusters
						b := bytes.Repeat([]byte{byte(i + 1), byte(0xa0 + g)}, 100<<10)
						copy(want[off:], b)
						var f blockdev.WriteFlags
						if k == 5 {
							f = blockdev.FUA
						}
						if err := p.WriteAt(t.Context(), b, off, f); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			// Zero a range inside written data, after those writes completed.
			if err := p.WriteZeroes(t.Context(), 1<<20, 128<<10, 0); err != nil {
				t.Fatal(err)
			}
			clear(want[1<<20 : 1<<20+128<<10])
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := p.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if err := p.ReadAt(t.Context(), got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back through the pool: %v (equal %v)", err, bytes.Equal(got, want))
			}
			ext, err := p.BlockStatus(t.Context(), blockdev.MetaBaseAllocation, 0, 64<<10)
			if err != nil || len(ext) == 0 || ext[0].Flags&blockdev.StateZero != 0 {
				t.Errorf("block status of written data: %+v, %v", ext, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			stop()

			ref := filepath.Join(dir, "want.raw")
			if err := os.WriteFile(ref, want, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", img, ref)
		})
	}
}

// Cutting one connection to qemu-nbd fails the pool, not the process.
func TestPoolQemuNBDConnectionLost(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, _ := qemuNBD(t, img, 4)
	p, err := DialPool(t.Context(), Target{Network: "unix", Address: sock}, ClientOptions{}, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.WriteAt(t.Context(), []byte{1}, 0, 0); err != nil {
		t.Fatal(err)
	}
	p.conns[3].c.nc.Close()
	<-p.Done()
	if err := p.WriteAt(t.Context(), []byte{2}, 0, 0); err == nil || err != p.Err() {
		t.Fatalf("write after a lost connection: got %v, want the pool's error %v", err, p.Err())
	}
	// The caller's recovery: close the failed pool (its healthy
	// connections still hold qemu-nbd's --shared slots), dial a new one.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := DialPool(t.Context(), Target{Network: "unix", Address: sock}, ClientOptions{}, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	b := make([]byte, 1)
	if err := q.ReadAt(t.Context(), b, 0); err != nil || b[0] != 1 {
		t.Fatalf("read through a new pool: %v %v", b, err)
	}
}
