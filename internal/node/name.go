package node

import "fmt"

// maxNameLen bounds node names (a DNS label's limit, so the name fits in
// the certificate's DNS SAN).
const maxNameLen = 63

// ValidateName checks a node name: 1 to 63 letters, digits, '.', '-' or
// '_', starting with a letter or digit. Names never hold ':', so they
// cannot be taken for a fingerprint.
func ValidateName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w %q: want 1 to %d characters", ErrInvalidName, name, maxNameLen)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '-' || r == '_'))
		if !ok {
			return fmt.Errorf("%w %q: use letters, digits, '.', '-' and '_', starting with a letter or digit", ErrInvalidName, name)
		}
	}
	return nil
}
