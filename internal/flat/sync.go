package flat

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// FailpointDataSync marks every fdatasync of a flat file. Armed as
// "flat.fdatasync" (failpoint.Env) it kills the daemon just before the
// call; armed as "flat.fdatasync=eio" the call fails with EIO, as a disk
// that lost a write would make it fail.
const FailpointDataSync = "flat.fdatasync"

// A failed sync is sticky ("fsyncgate"). When writeback of a dirty page
// fails, Linux reports the error to the next fdatasync on the file,
// once, and may then drop the page or mark it clean:
// a retried fdatasync succeeds although the data never reached the disk.
// So the first failure marks the Device broken, and from then on every
// Flush and every write (FUA or not) fails with ErrSyncFailed until the
// volume is reopened. Reads still work.
//
// The kernel reports the error to only one of the syncs in flight on the
// file at that moment. A sync that succeeded therefore waits, before it
// reports success, until every sync that overlapped it has finished and
// recorded its result (syncMu taken exclusively), then checks again.

// syncFailure is the first failed sync of a Device.
type syncFailure struct{ err error }

// synced runs sync, a syscall that reports writeback errors of the file
// (fdatasync), under the sticky-failure rule above.
// Unsupported errors (EOPNOTSUPP, ENOSYS) are returned as they are and do
// not break the Device: the call did nothing.
func (d *Device) synced(op string, sync func() error) error {
	d.syncMu.RLock()
	err := d.brokenErr(op)
	if err == nil {
		err = sync()
		if err != nil && !unsupported(err) {
			d.broken.CompareAndSwap(nil, &syncFailure{err: err})
		}
	}
	d.syncMu.RUnlock()
	if err != nil {
		return err
	}
	d.syncMu.Lock() // waits for the syncs that overlapped this one
	err = d.brokenErr(op)
	d.syncMu.Unlock()
	return err
}

// brokenErr is ErrSyncFailed wrapping the first failed sync, or nil.
func (d *Device) brokenErr(op string) error {
	f := d.broken.Load()
	if f == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w: %w", op, d.path, ErrSyncFailed, f.err)
}

// datasync makes every completed write durable (fdatasync).
func (d *Device) datasync(op string) error {
	return d.synced(op, func() error {
		d.fp.Hit(FailpointDataSync)
		if err := d.fp.Err(FailpointDataSync); err != nil {
			return d.mapErr(op+" (fdatasync)", err)
		}
		for {
			err := d.sys.fdatasync(d.fd)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return d.mapErr(op+" (fdatasync)", err)
			}
			return nil
		}
	})
}
