package failpoint

import "testing"

func TestParse(t *testing.T) {
	s := Parse(" migrate.after-copy, consolidate.before-unlink ,,")
	for _, n := range []string{"migrate.after-copy", "consolidate.before-unlink"} {
		if !s.Armed(n) {
			t.Errorf("%s not armed", n)
		}
	}
	if s.Armed("migrate.after-snapshot") || (*Set)(nil).Armed("x") || Parse("").Armed("") {
		t.Error("armed what was not listed")
	}
	s.Hit("not-armed") // must return
}
