package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
)

// The loop's side of interactive queries (query.go): a query of a task
// this worker holds is queued (Worker.queries) and the loop, idle in a
// poll, is woken; between two batches, after the revoked tasks closed and
// the assigned ones opened (prepareAssigned), the loop answers every
// query queued, each from its open task, which holds only committed state
// then. A task assigned and not open yet answers that it is not ready.

// queryQueue bounds the queries waiting for the loop; more wait to be
// queued (or for their context).
const queryQueue = 64

// queryRequest is one query of a task this worker holds.
type queryRequest struct {
	ctx      context.Context
	store    string
	kind     topology.StoreKind
	key      []byte // serialized
	task     topology.TaskID
	from, to time.Time // a window query's range
	reply    chan queryReply
}

// queryReply is the loop's answer: why it cannot answer now, or what the
// task's store holds, or the task's failure to read it.
type queryReply struct {
	why     string
	found   bool
	value   []byte
	windows []topology.WindowValue
	err     error
}

// serveQueries answers, between two batches, the queries queued when it
// is called (those queued meanwhile wait for the next call).
func (w *Worker) serveQueries(c *batch.Core) {
	n := len(w.queries)
	if n == 0 {
		return
	}
	w.closeRevoked(c) // a query never reads a task whose partition went
	for ; n > 0; n-- {
		q := <-w.queries
		if q.ctx.Err() != nil {
			continue // its caller gave up
		}
		q.reply <- w.answer(c, q)
	}
}

// answer answers q from its open task.
func (w *Worker) answer(c *batch.Core, q *queryRequest) queryReply {
	if w.txnOpen.Load() {
		return queryReply{err: &FatalError{Cause: "internal error", Err: errors.New("a query served while a transaction is open")}}
	}
	task := taskName(q.task)
	t, open := c.Task(q.task)
	if !open {
		// Assigned, its offsets not fetched yet or its restore to come
		// (prepareAssigned), or revoked meanwhile.
		return queryReply{why: fmt.Sprintf("task %s: assigned to this worker and not restored yet, or moving (a rebalance is under way)", task)}
	}
	r, ok := t.(topology.StoreReader)
	if !ok {
		return queryReply{err: fmt.Errorf("txn: task %s has no store %s", task, q.store)}
	}
	var reply queryReply
	switch q.kind {
	case topology.WindowStore:
		reply.windows, reply.err = r.Windows(q.store, q.key, q.from, q.to)
	default:
		reply.value, reply.found, reply.err = r.Get(q.store, q.key)
	}
	return reply
}
