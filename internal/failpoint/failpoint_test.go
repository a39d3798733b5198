package failpoint

import (
	"errors"
	"syscall"
	"testing"
)

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

func TestErr(t *testing.T) {
	s := Parse("flat.fdatasync=eio, migrate.after-copy")
	if !s.Armed("flat.fdatasync") {
		t.Fatal("flat.fdatasync=eio not armed")
	}
	err := s.Err("flat.fdatasync")
	if !errors.Is(err, ErrInjected) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Err = %v, want ErrInjected wrapping EIO", err)
	}
	s.Hit("flat.fdatasync") // armed to fail, not to kill: must return
	if err := s.Err("migrate.after-copy"); err != nil {
		t.Errorf("Err of a kill failpoint = %v, want nil", err)
	}
	if err := (*Set)(nil).Err("x"); err != nil {
		t.Errorf("nil Set Err = %v", err)
	}
}
