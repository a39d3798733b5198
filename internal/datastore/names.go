package datastore

import (
	"fmt"
	"regexp"
)

// nameRE is the rule for volume and datastore names: a letter or digit,
// then up to 63 letters, digits, dots, underscores or dashes. The name is
// used as a directory, a file name prefix and an NBD export name, so it
// must be safe in all three (no slash, no leading dot or dash).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether s is a valid volume or datastore name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CheckName returns an error wrapping ErrInvalidName when s is not a valid
// name; what names the kind of thing ("volume", "datastore").
func CheckName(what, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%s name %q: must start with a letter or digit and contain only letters, digits, '.', '_' and '-' (at most 64 characters): %w",
			what, s, ErrInvalidName)
	}
	return nil
}
