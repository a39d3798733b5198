package engine

import "github.com/extrasphere/extrasphere/internal/node"

// Node returns the daemon's node service (identity, peers), nil if the
// daemon runs without one.
func (e *Engine) Node() *node.Service { return e.cfg.Node }
