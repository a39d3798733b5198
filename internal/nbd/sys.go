package nbd

import "syscall"

// syscallEMFILE: accept failed for lack of file descriptors; retried.
const syscallEMFILE = syscall.EMFILE
