package engine

import "github.com/extrasphere/extrasphere/internal/errkind"

// errorf formats a message like fmt.Errorf (%w allowed for a cause) and
// tags it with the sentinel kind (internal/errkind).
func errorf(kind error, format string, a ...any) error { return errkind.Errorf(kind, format, a...) }
