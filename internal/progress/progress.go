// Package progress draws the CLI's progress bar for long jobs.
//
// On a terminal the bar redraws one line in place:
//
//	import vm1  [==========>         ]  52%  1.0 GiB / 2.0 GiB  310 MiB/s
//
// Elsewhere (a pipe, a log file) it prints a plain line whenever another 10%
// is done or 5 seconds have passed, and once at the end.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	barWidth      = 30
	plainInterval = 5 * time.Second
	plainStep     = 10 // percent
)

// Bar is a progress display. It is used from one goroutine.
type Bar struct {
	w     io.Writer
	tty   bool
	label string
	now   func() time.Time

	start     time.Time
	lastTime  time.Time // last plain line
	lastPct   int       // percent at the last plain line
	lastDone  int64     // for the rate
	rateTime  time.Time // time of lastDone
	rateBytes float64   // bytes per second, smoothed
}

// New returns a bar writing to w; it draws in place when w is a terminal.
func New(w io.Writer, label string) *Bar {
	return newBar(w, label, IsTerminal(w), time.Now)
}

func newBar(w io.Writer, label string, tty bool, now func() time.Time) *Bar {
	t := now()
	return &Bar{w: w, tty: tty, label: label, now: now, start: t, lastTime: t, rateTime: t, lastPct: -1}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Update shows done of total bytes.
func (b *Bar) Update(done, total int64) {
	t := b.now()
	b.updateRate(done, t)
	pct := percent(done, total)
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\x1b[K", b.line(done, total, pct))
		return
	}
	if pct >= b.lastPct+plainStep || t.Sub(b.lastTime) >= plainInterval || b.lastPct < 0 {
		fmt.Fprintf(b.w, "%s: %d%% (%s of %s)\n", b.label, pct, FormatBytes(done), FormatBytes(total))
		b.lastPct = pct
		b.lastTime = t
	}
}

// Finish draws the final state and ends the line. A "done" job is 100%
// even when it had nothing to do (total 0); state is the job's state
// (job.Done is "done"; progress does not import job).
func (b *Bar) Finish(done, total int64, state string) {
	pct := percent(done, total)
	if state == "done" {
		pct = 100
	}
	el := b.now().Sub(b.start).Round(100 * time.Millisecond)
	if b.tty {
		fmt.Fprintf(b.w, "\r%s  %s in %s\x1b[K\n", b.line(done, total, pct), state, el)
		return
	}
	fmt.Fprintf(b.w, "%s: %s, %d%% (%s of %s) in %s\n", b.label, state, pct, FormatBytes(done), FormatBytes(total), el)
}

func (b *Bar) updateRate(done int64, t time.Time) {
	dt := t.Sub(b.rateTime).Seconds()
	if dt < 0.5 {
		return
	}
	r := float64(done-b.lastDone) / dt
	if b.rateBytes == 0 {
		b.rateBytes = r
	} else {
		b.rateBytes = 0.7*b.rateBytes + 0.3*r
	}
	b.lastDone, b.rateTime = done, t
}

func (b *Bar) line(done, total int64, pct int) string {
	fill := pct * barWidth / 100
	bar := strings.Repeat("=", fill)
	if fill < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-fill-1)
	}
	s := fmt.Sprintf("%s  [%s] %3d%%  %s / %s", b.label, bar, pct, FormatBytes(done), FormatBytes(total))
	if b.rateBytes > 0 {
		s += "  " + FormatBytes(int64(b.rateBytes)) + "/s"
	}
	return s
}

func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	if done >= total {
		return 100
	}
	if done <= 0 {
		return 0
	}
	return int(float64(done) * 100 / float64(total))
}

// FormatBytes prints n with a binary unit: "512 B", "1.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
