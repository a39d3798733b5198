//go:build !extrasphere_checked

package blockdev

// CheckedBuild is false in normal builds: stacks run without the checked
// device. Build with -tags extrasphere_checked to turn it on.
const CheckedBuild = false
