// Package errkind tags an error with a sentinel, its kind, without adding
// the sentinel's text to the message: the message is complete on its own
// (it names the volume or thing and says what to do) and errors.Is still
// finds the kind, which the API maps to a status and a code.
package errkind

import "fmt"

// kindError is a message that also matches its kind with errors.Is.
type kindError struct {
	kind error // the sentinel
	err  error // the full message, possibly wrapping a cause
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Errorf formats a message like fmt.Errorf (%w allowed for a cause) and
// tags it with kind.
func Errorf(kind error, format string, a ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, a...)}
}
