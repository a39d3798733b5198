package errkind

import (
	"errors"
	"io/fs"
	"testing"
)

func TestErrorf(t *testing.T) {
	kind := errors.New("volume not found")
	err := Errorf(kind, "no volume %s: see `volume list`: %w", "v", fs.ErrNotExist)
	if err.Error() != "no volume v: see `volume list`: file does not exist" {
		t.Errorf("message %q: the kind's text must not be added", err)
	}
	if !errors.Is(err, kind) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v does not match its kind and its cause", err)
	}
}
