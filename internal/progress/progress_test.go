package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPlainLines(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBar(&out, "import v", false, c.now)
	const total = 1000
	b.Update(0, total)   // first line always
	b.Update(50, total)  // 5%: too soon, too little
	b.Update(120, total) // 12%: a 10% step
	c.t = c.t.Add(6 * time.Second)
	b.Update(130, total) // 13%: interval passed
	b.Finish(total, total, "done")

	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"import v: 0% (0 B of 1000 B)",
		"import v: 12% (120 B of 1000 B)",
		"import v: 13% (130 B of 1000 B)",
		"import v: done, 100% (1000 B of 1000 B) in 6s",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFinishNothingToDo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tty   bool
		state string
		want  string
	}{
		{"PlainDone", false, "done", "import v: done, 100% (0 B of 0 B) in 0s\n"},
		{"PlainCancelled", false, "cancelled", "import v: cancelled, 0% (0 B of 0 B) in 0s\n"},
		{"TTYDone", true, "done", "\rimport v  [" + strings.Repeat("=", barWidth) + "] 100%  0 B / 0 B  done in 0s\x1b[K\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			b := newBar(&out, "import v", tc.tty, c.now)
			b.Finish(0, 0, tc.state)
			if got := out.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTTYRedraws(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBar(&out, "export v", true, c.now)
	b.Update(512<<20, 1<<30)
	s := out.String()
	if !strings.HasPrefix(s, "\rexport v  [===============>") || !strings.Contains(s, " 50%  512.0 MiB / 1.0 GiB") {
		t.Fatalf("tty line %q", s)
	}
	if strings.Contains(s, "\n") {
		t.Fatalf("tty update wrote a newline: %q", s)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {20 << 30, "20.0 GiB"}, {1 << 62, "4.0 EiB"}} {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
