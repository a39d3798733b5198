package chainops

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/datastore"
)

// ResumeMerges finishes merges a stop or crash interrupted. The layer
// under a volume's top normally carries the name of the snapshot that
// froze it; one without a name is a snapshot removal that committed but
// whose merge did not finish, and one named migrate-* is a migration that
// stopped before its commit (its target copy was swept with the staging
// directory), which rolls back by merging. Either way the merge runs as a
// job, so the daemon serves at once. temp names the prefixes of other
// operations' snapshots that are merged away the same (a backup's).
func (s *Service) ResumeMerges(ctx context.Context, temp ...string) {
	s.host.Lock()
	var todo []Vol
	for _, v := range s.host.VolumesLocked() {
		if in := v.InfoLocked(); in.Err == nil && in.Served && !in.ReadOnly {
			todo = append(todo, v)
		}
	}
	s.host.Unlock()
	for _, v := range todo {
		ls := layersOf(v)
		c, ok := v.Layers().(*chain.Chain)
		if !ok || v.Filling() != nil { // a base restored from a backup takes no merge before promote
			continue
		}
		if k := interruptedFrozenMerge(ls); k >= 0 {
			s.log.Warn("resuming an interrupted snapshot removal", "volume", v.Name(), "layer", ls[k].path)
			v.SnapMu().Lock()
			if _, err := s.startFrozenMerge(v, c, k, v.SnapMu().Unlock); err != nil {
				s.log.Error("resume snapshot removal", "volume", v.Name(), "err", err)
			}
			continue
		}
		if len(ls) < 2 || !ls[len(ls)-2].own {
			continue
		}
		below, top := ls[len(ls)-2], ls[len(ls)-1]
		name, _ := below.snapshot()
		if name != "" && !temporary(name, temp) {
			continue
		}
		s.log.Warn("resuming an interrupted merge", "volume", v.Name(), "layer", below.path, "snapshot", name)
		if name != "" {
			if err := below.setSnapshot("", time.Time{}); err != nil {
				s.log.Error("resume merge: un-name layer", "volume", v.Name(), "err", err)
				continue
			}
		}
		v.SnapMu().Lock()
		if _, err := s.startMerge(v, c, below, top, v.SnapMu().Unlock); err != nil {
			s.log.Error("resume merge", "volume", v.Name(), "err", err)
		}
	}
}

// RemoveOrphans deletes deltas a crash left after step 4 of a frozen
// merge: their content is in their parent, and nothing names them.
func (s *Service) RemoveOrphans(vol string, orphans []string) {
	for _, p := range orphans {
		err := os.Remove(p)
		if err == nil {
			err = datastore.SyncDir(filepath.Dir(p))
		}
		if err != nil {
			s.log.Error("delete merged delta left by a crash", "volume", vol, "path", p, "err", err)
			continue
		}
		s.log.Warn("deleted a merged delta left by a crash", "volume", vol, "path", p)
	}
}

// interruptedFrozenMerge returns the layer k of an interrupted frozen
// merge (an own layer under a frozen one that is un-named, or named like
// the one above it), or -1.
func interruptedFrozenMerge(ls []layer) int {
	for k := 0; k+2 < len(ls); k++ {
		if !ls[k].own {
			continue
		}
		name, _ := ls[k].snapshot()
		if next, _ := ls[k+1].snapshot(); name == "" || name == next {
			return k
		}
	}
	return -1
}

// temporary says a snapshot name is an operation's own (a migration's, or
// one of the prefixes in temp), merged away when found after a crash.
func temporary(name string, temp []string) bool {
	if strings.HasPrefix(name, migrateSnapPrefix) {
		return true
	}
	for _, p := range temp {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
