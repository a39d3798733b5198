//go:build extrasphere_checked

package blockdev

// CheckedBuild is true in builds with -tags extrasphere_checked: the
// engine wraps every hop of an export's stack in NewChecked.
const CheckedBuild = true
