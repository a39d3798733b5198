package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrBadImage: qemu-img describes an image that cannot be a volume.
var ErrBadImage = errors.New("not a usable image")

// Formats lists the image formats import and export accept. "raw" is
// handled natively; the others go through qemu-img.
var Formats = []string{"raw", "qcow2", "vmdk", "vdi", "vhdx"}

// ValidFormat reports whether f is one of Formats.
func ValidFormat(f string) bool {
	for _, x := range Formats {
		if f == x {
			return true
		}
	}
	return false
}

// ImageInfo is the part of `qemu-img info --output=json` that import uses.
type ImageInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// QemuImgInfo runs qemu-img (the binary at qemuImg) info on path; format
// "" lets qemu-img probe. An image without a size fails with ErrBadImage.
func QemuImgInfo(ctx context.Context, qemuImg, path, format string) (ImageInfo, error) {
	args := []string{"info", "--output=json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	args = append(args, path)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: %s: %w", path, lastLine(stderr.String()), err)
	}
	var in ImageInfo
	if err := json.Unmarshal(stdout.Bytes(), &in); err != nil {
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: decode: %w", path, err)
	}
	if in.VirtualSize <= 0 {
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: virtual size %d: %w", path, in.VirtualSize, ErrBadImage)
	}
	return in, nil
}

// progressRE matches qemu-img -p output: "    (12.34/100%)".
var progressRE = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// waitDelay bounds how long qemu-img's output pipes are waited for once
// it is killed (a child holding them must not hang the job).
const waitDelay = 5 * time.Second

// QemuImgRun runs qemu-img with -p in args and calls onPct with every
// percentage it prints. A cancelled ctx kills qemu-img.
func QemuImgRun(ctx context.Context, qemuImg string, args []string, onPct func(float64)) error {
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	var stderr tailBuffer
	cmd.Stdout = &progressWriter{onPct: onPct}
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("qemu-img %s: %s: %w", args[0], lastLine(stderr.String()), err)
	}
	return nil
}

// progressWriter parses qemu-img -p output, lines separated by \r or \n.
// It is written to by one goroutine (exec's copier).
type progressWriter struct {
	onPct func(float64)
	line  []byte // the unfinished line, at most maxProgressLine bytes
}

const maxProgressLine = 256

func (w *progressWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\r' || c == '\n' {
			w.flushLine()
			continue
		}
		if len(w.line) < maxProgressLine {
			w.line = append(w.line, c)
		}
	}
	return len(p), nil
}

func (w *progressWriter) flushLine() {
	m := progressRE.FindSubmatch(w.line)
	w.line = w.line[:0]
	if m == nil || w.onPct == nil {
		return
	}
	if pct, err := strconv.ParseFloat(string(m[1]), 64); err == nil {
		w.onPct(pct)
	}
}

// tailBuffer keeps the last 4 KiB written to it (qemu-img's stderr).
type tailBuffer struct {
	mu sync.Mutex // guards b
	b  []byte
}

const tailMax = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append([]byte(nil), t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lastLine is the last non-empty line of s, or "no message".
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return "no message"
}
