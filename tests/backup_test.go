//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/repo/backend/s3/s3test"
)

// Issue 4, "Must show" 2 and 3: backup and restore through the CLI, into a local repository and
// into a real S3 server (versitygw), while fio writes and verifies on one half of the volume and a
// sequence writer puts numbered 64 KiB patterns on the other half, one qemu-io write+flush each.
// A backup is a snapshot at one instant, so its restore must hold exactly the first n patterns for
// some n: every pattern acknowledged before the backup started, none issued after it ended. The
// restored image is compared byte for byte (qemu-img compare) with the model for that n. Then:
// the incrementals read little, a restore into a new volume matches, verify --read-data is clean,
// and prune keeps the newest backups, each of which still restores.
func TestBackupRoundTrip(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		d := startDaemon(t)
		d.CLI("repo", "init", filepath.Join(t.TempDir(), "repo"))
		backupRoundTrip(t, d)
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		bucket := srv.NewBucket(t)
		d := startDaemon(t)
		d.CLI("repo", "init", "s3://"+bucket+"/host1", "--endpoint", srv.Endpoint,
			"--access-key", srv.AccessKey, "--secret-key", srv.SecretKey)
		backupRoundTrip(t, d)
	})
}

const (
	bkSize    = 64 << 20
	bkSeqBase = 40 << 20 // the sequence writer's region: 64 KiB slots from here
	bkSeqSlot = 64 << 10
)

type seqWrite struct {
	i          int
	start, end time.Time
	ok         bool
}

// seqWriter writes pattern i into slot i (wrapping after 300), one qemu-io write+flush each.
type seqWriter struct {
	stop   atomic.Bool
	done   chan struct{}
	writes []seqWrite
}

func startSeqWriter(ctx context.Context, uri string, first int) *seqWriter {
	w := &seqWriter{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := first; !w.stop.Load(); i++ {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
			cmd := exec.CommandContext(cctx, "qemu-io", "-f", "raw", "-c",
				fmt.Sprintf("write -P %#x %d %d", seqPat(i), seqOff(i), bkSeqSlot), "-c", "flush", uri)
			out, err := cmd.CombinedOutput()
			cancel()
			ok := err == nil && strings.Contains(string(out), "wrote ") && !strings.Contains(string(out), "failed")
			w.writes = append(w.writes, seqWrite{i: i, start: start, end: time.Now(), ok: ok})
			if !ok {
				return
			}
		}
	}()
	return w
}

func (w *seqWriter) wait() []seqWrite { w.stop.Store(true); <-w.done; return w.writes }

func seqPat(i int) byte        { return byte(1 + i%250) }
func seqOff(i int) int64       { return bkSeqBase + int64(i%300)*bkSeqSlot }
func applySeq(m []byte, i int) { copy(m[seqOff(i):], bytes.Repeat([]byte{seqPat(i)}, bkSeqSlot)) }

type bkJob struct {
	ID      string    `json:"id"`
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"finished"`
	Detail  string    `json:"detail"`
}

type bkInfo struct {
	ID    string `json:"id"`
	Stats struct {
		BytesRead   int64 `json:"bytes_read"`
		BytesReused int64 `json:"bytes_reused"`
	} `json:"stats"`
}

func backupRoundTrip(t *testing.T, d *daemon) {
	d.CreateVolume("bk", "64M")
	uri := d.UnixURI("bk")
	src, data := randomFile(t, t.TempDir(), "bk.raw", 24<<20, 77)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	model := make([]byte, bkSize)
	copy(model, data)

	var ids []string
	var images [][]byte
	first := 0
	var prevWrites []seqWrite
	var prevStarted time.Time
	for round := range 3 {
		// fio on [24M, 40M) with its own verify, the sequence writer on [40M, 64M).
		fio := make(chan fioRun, 1)
		go func() {
			fio <- fioJob(t.Context(), round, append(fioVerifyArgs("bkload", uri), "--rw=randwrite", "--bs=4k",
				"--iodepth=8", "--offset=24m", "--size=16m", fmt.Sprintf("--randseed=%d", round+1))...)
		}()
		w := startSeqWriter(t.Context(), uri, first)
		time.Sleep(300 * time.Millisecond) // placement only: both are writing when the backup starts
		out := d.CLI("backup", "run", "bk", "--json")
		var j bkJob
		if err := json.Unmarshal([]byte(out), &j); err != nil || j.State != "done" {
			t.Fatalf("backup run --json: %v:\n%s", err, out)
		}
		ws := w.wait()
		if r := <-fio; r.err != nil {
			t.Fatalf("fio during backup %d: %v\n%s", round, r.err, r.out)
		}
		var bs []bkInfo
		if err := json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs); err != nil || len(bs) != round+1 {
			t.Fatalf("backup list: %v %+v", err, bs)
		}
		ids = append(ids, bs[round].ID)
		if round > 0 {
			// What may have changed since the previous backup's snapshot: fio's region, and
			// every slot the sequence writer may have written after that snapshot was taken.
			slots := map[int64]bool{}
			for _, x := range prevWrites {
				if x.end.After(prevStarted) {
					slots[seqOff(x.i)] = true
				}
			}
			for _, x := range ws {
				if x.start.Before(j.Ended) {
					slots[seqOff(x.i)] = true
				}
			}
			bound := int64(16<<20) + int64(len(slots))*bkSeqSlot
			if st := bs[round].Stats; st.BytesRead > bound || st.BytesReused == 0 {
				t.Errorf("backup %d read %d bytes and reused %d: at most %d of %d can have changed since backup %d",
					round, st.BytesRead, st.BytesReused, bound, bkSize, round-1)
			}
		}
		prevWrites, prevStarted = ws, j.Started

		// Restore and find n: the patterns present must be a prefix of the sequence.
		restored := filepath.Join(t.TempDir(), "restored.raw")
		d.CLI("restore", ids[round], "--to", restored)
		got := readFile(t, restored)
		n := 0
		for n < len(ws) && isSeqPresent(got, ws[n].i) {
			n++
		}
		for _, x := range ws {
			switch {
			case x.end.Before(j.Started) && x.i >= ws[0].i+n:
				t.Errorf("backup %d: pattern %d, acknowledged before the backup started, is missing", round, x.i)
			case x.start.After(j.Ended) && x.i < ws[0].i+n:
				t.Errorf("backup %d: pattern %d, written after the backup ended, is in it", round, x.i)
			}
		}
		want := bytes.Clone(model)
		for _, x := range ws[:n] {
			applySeq(want, x.i)
		}
		copy(want[24<<20:40<<20], got[24<<20:40<<20]) // fio's region: its own verify checked it
		wantPath := filepath.Join(t.TempDir(), "want.raw")
		if err := os.WriteFile(wantPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out := runStatus(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", restored, wantPath); code != 0 {
			t.Fatalf("backup %d: restore differs from the first %d patterns of the sequence:\n%s", round, n, out)
		}
		images = append(images, got)
		t.Logf("backup %d: %d of %d sequence writes in it; %s", round, n, len(ws), j.Detail)
		for _, x := range ws {
			if x.ok {
				applySeq(model, x.i)
			}
		}
		served := readFile(t, migExport(t, d, "bk"))
		copy(model[24<<20:40<<20], served[24<<20:40<<20])
		first += len(ws)
	}

	d.CLI("restore", ids[1], "--volume", "bk-restored")
	if i := firstDiff(readFile(t, migExport(t, d, "bk-restored")), images[1]); i >= 0 {
		t.Fatalf("restore into a new volume differs at byte %d", i)
	}
	if out := d.CLI("backup", "verify", "--read-data"); !strings.Contains(out, "3 backups") || !strings.Contains(out, "0 missing, 0 corrupt") {
		t.Fatalf("verify --read-data:\n%s", out)
	}
	d.CLI("backup", "prune", "--keep-last", "2")
	var bs []bkInfo
	if err := json.Unmarshal([]byte(d.CLI("backup", "list", "--json")), &bs); err != nil || len(bs) != 2 || bs[0].ID != ids[1] {
		t.Fatalf("after prune --keep-last 2: %v %+v", err, bs)
	}
	for k, id := range ids[1:] {
		p := filepath.Join(t.TempDir(), "kept.raw")
		d.CLI("restore", id, "--to", p)
		if i := firstDiff(readFile(t, p), images[k+1]); i >= 0 {
			t.Fatalf("after prune, backup %s restores differently at byte %d", id, i)
		}
	}
	if code, out := d.CLIStatus("restore", ids[0], "--to", filepath.Join(t.TempDir(), "gone.raw")); code != 1 || !strings.Contains(out, ids[0]) {
		t.Errorf("restore of a pruned backup: exit %d %q, want 1 naming it", code, out)
	}
}

// isSeqPresent reports whether slot i of got holds pattern i.
func isSeqPresent(got []byte, i int) bool {
	s := got[seqOff(i) : seqOff(i)+bkSeqSlot]
	return bytes.Count(s, []byte{seqPat(i)}) == len(s)
}
