// Package tests holds Extrasphere's end-to-end tests: the real daemon binary driven by the real NBD
// clients users run (qemu-io, qemu-img, nbdinfo, nbdcopy, nbdsh, fio, qemu-storage-daemon and a TCG
// guest in qemu-system-x86_64). They carry the build tag `integration`:
//
//	go test -tags integration -count=1 -v ./tests/
//
// See tests/README.md for what each test shows and the environment knobs.
package tests
