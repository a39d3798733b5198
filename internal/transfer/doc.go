// Package transfer moves a volume's bytes between a device and the
// outside: import from a raw file (CopyIn), export to one (CopyOut), a
// device into another (CopyDevice: promote), and other image formats
// through qemu-img (QemuImgInfo, QemuImgRun).
//
// Every copy goes through one loop (copyPlan.run): the ranges that may
// hold data (SEEK_DATA/SEEK_HOLE of a file, a device's base:allocation
// map, listed as it goes), cut into pieces aligned to the copy unit,
// read and written by a few goroutines; a piece read as all zero is not
// written, so the target stays thin. Progress counts holes too, so it
// ends at the size. Cancelling the context stops the loop: pieces not
// started are not, those running see the cancellation, and the copy
// returns the context's error.
//
// The package keeps no state between calls and takes no lock but the
// Limiter's (a migration's --rate).
package transfer
