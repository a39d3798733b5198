//go:build extrasphere_checked

package blockdev

// CheckedBuild is true in builds with -tags extrasphere_checked: the
// engine puts a NewChecked below every export's gate (engine.buildStack),
// so every request the stack gets is checked.
const CheckedBuild = true
