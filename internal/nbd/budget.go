package nbd

import (
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Memory budget of the transmission phase.
//
// Every admitted request holds a ticket from the moment the reader admits
// it until the memory it stands for is free again:
//
//	WRITE        its payload buffer, until the device write returned
//	READ         its data buffer, until the reply was written to the socket
//	             (or dropped with the connection): queued replies count
//	CACHE        its read-through buffer (cacheStep at most)
//	BLOCK_STATUS its largest possible reply
//	others       requestOverhead
//
// A ticket is taken from two budgets, in this order: the connection's own
// (which also counts every request at least minWeight, so it bounds the
// number of requests in flight) and the server's global one (which counts
// the bytes really held: buffer pool classes, not request lengths). The
// reader waits for both before it reads any further request, so a client
// that stops reading replies stalls its own connection first; the writer's
// deadline then drops it and its tickets go back. Waits end when the
// connection ends or Shutdown stops the reader (conn.readCtx), never only
// when budget frees up.

// ticket is what one request holds of the two budgets.
type ticket struct {
	conn   int64 // of the connection's budget
	global int64 // of the server's
}

// memBudget is the server-wide budget: a FIFO semaphore (a large request is
// not starved by small ones) and a gauge of what is held, for tests and
// metrics.
type memBudget struct {
	sem   *semaphore.Weighted
	limit int64
	held  atomic.Int64
}

func newMemBudget(limit int64) *memBudget {
	return &memBudget{sem: semaphore.NewWeighted(limit), limit: limit}
}

// MemoryInUse returns the NBD buffer bytes currently held by all connections.
func (s *Server) MemoryInUse() int64 { return s.mem.held.Load() }

// ticketFor is the ticket a validated request needs.
func (t *transmission) ticketFor(req request) ticket {
	var mem int64
	switch req.typ {
	case cmdRead, cmdWrite:
		mem = bufClassSize(int(req.length))
	case cmdCache:
		mem = bufClassSize(int(min(int64(req.length), cacheStep)))
	case cmdBlockStatus:
		mem = int64(len(t.meta)) * (4 + 8*maxStatusExtents)
	}
	mem = max(mem, requestOverhead)
	// Never more than a budget holds: a wait for that would never end.
	return ticket{conn: min(max(mem, minWeight), t.budgetSize), global: min(mem, t.c.srv.mem.limit)}
}

// acquire waits for tk in both budgets. It fails only when the reader must
// stop (the connection ends or Shutdown).
func (t *transmission) acquire(tk ticket) error {
	ctx := t.c.readCtx
	if err := t.budget.Acquire(ctx, tk.conn); err != nil {
		return err
	}
	if err := t.c.srv.mem.sem.Acquire(ctx, tk.global); err != nil {
		t.budget.Release(tk.conn)
		return err
	}
	t.c.srv.mem.held.Add(tk.global)
	return nil
}

// release gives tk back to both budgets.
func (t *transmission) release(tk ticket) {
	t.c.srv.mem.held.Add(-tk.global)
	t.c.srv.mem.sem.Release(tk.global)
	t.budget.Release(tk.conn)
}

// connBudgetFor is one connection's budget under a global one of total.
func connBudgetFor(total, asked int64) int64 {
	if asked <= 0 {
		asked = total / defaultConnShare
	}
	return max(min(asked, total), MaxPayload)
}
