package datastore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Space is the capacity of the filesystem under a datastore.
type Space struct {
	Total uint64 `json:"total_bytes"`
	Free  uint64 `json:"free_bytes"` // available to unprivileged users
}

// Space returns statfs figures for the datastore's filesystem.
func (d *Datastore) Space() (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.Path, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", d.Path, err)
	}
	bs := uint64(st.Bsize)
	return Space{Total: st.Blocks * bs, Free: st.Bavail * bs}, nil
}
