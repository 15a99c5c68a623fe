package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
)

// The loop's side of interactive queries (query.go): a query of a task
// this worker holds is queued (Worker.queries) and the loop, idle in a
// poll, is woken; between two batches, after the revoked tasks closed,
// the loop answers every query queued, each from its open task, which
// holds only committed state then. A task this worker holds and has not
// opened yet (no record of its partition has arrived since it was
// assigned) is opened for the query, as a record would open it.

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
// is called (those queued meanwhile wait for the next call). cl is the
// session's client. It returns only an error that ends the session: the
// failure to restore a task opened for a query.
func (w *Worker) serveQueries(ctx context.Context, c *batch.Core, cl *kgo.Client) error {
	n := len(w.queries)
	if n == 0 {
		return nil
	}
	w.closeRevoked(c) // a query never reads a task whose partition went
	for ; n > 0; n-- {
		q := <-w.queries
		if q.ctx.Err() != nil {
			continue // its caller gave up
		}
		r, err := w.answer(ctx, c, cl, q)
		q.reply <- r
		if err != nil {
			return err
		}
	}
	return nil
}

// answer answers q from its task, opening the task first when this
// worker holds it but has not opened it.
func (w *Worker) answer(ctx context.Context, c *batch.Core, cl *kgo.Client, q *queryRequest) (queryReply, error) {
	if w.txnOpen.Load() {
		return queryReply{err: &FatalError{Cause: "internal error", Err: errors.New("a query served while a transaction is open")}}, nil
	}
	task := taskName(q.task)
	t, open := c.Task(q.task)
	if !open {
		why, err := w.openForQuery(ctx, c, cl, q.task)
		if why != "" || err != nil {
			if why == "" {
				why = fmt.Sprintf("task %s: opening it failed: %v", task, err)
			}
			return queryReply{why: why}, err
		}
		t, _ = c.Task(q.task)
	}
	r, ok := t.(topology.StoreReader)
	if !ok {
		return queryReply{err: fmt.Errorf("txn: task %s has no store %s", task, q.store)}, nil
	}
	var reply queryReply
	switch q.kind {
	case topology.WindowStore:
		reply.windows, reply.err = r.Windows(q.store, q.key, q.from, q.to)
	default:
		reply.value, reply.found, reply.err = r.Get(q.store, q.key)
	}
	return reply, nil
}

// openForQuery opens task id for a query: when this worker holds its
// partition, and the group's committed offsets of its source partitions
// are stable (no transaction that commits offsets of them is open: the
// partition's previous owner is done with it), it creates and restores
// the task from those offsets, as a record of the partition would. It
// returns why it did not ("" when it did), and the error of a failed
// restore, which ends the session as it would on a record's arrival.
func (w *Worker) openForQuery(ctx context.Context, c *batch.Core, cl *kgo.Client, id topology.TaskID) (why string, err error) {
	task := taskName(id)
	routes := w.routes.Load()
	held := w.held.Load()
	if routes == nil || held == nil || !held.has((*routes)[id.Subtopology].topics, id.Partition) {
		return fmt.Sprintf("task %s: no longer assigned to this worker (a rebalance is under way)", task), nil
	}
	topics := c.SourcesOf(id)
	fctx, cancel := context.WithTimeout(ctx, w.cfg.SessionTimeout)
	defer cancel()
	committed, err := w.stableOffsets(fctx, cl, topics, id.Partition)
	if err != nil {
		return fmt.Sprintf("task %s: assigned to this worker, not open yet: %v", task, err), nil
	}
	w.log.Info("opening a task for a query", "task", task)
	if err := w.openTasks(ctx, c, []topology.TaskID{id}, committed); err != nil {
		return "", err
	}
	return "", nil
}

// stableOffsets returns the group's committed offsets of partition p of
// topics, asked with require_stable, as Client.CommittedOffsets gives
// them (partitions without a commit left out). It fails while a
// transaction holds offsets of them (UNSTABLE_OFFSET_COMMIT).
func (w *Worker) stableOffsets(ctx context.Context, cl *kgo.Client, topics []string, p int32) (map[string]map[int32]kgo.EpochOffset, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = w.topo.AppID()
	req.RequireStable = true
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = t
		rt.Partitions = []int32{p}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("fetching its committed offsets: %w", err)
	}
	unstable := func(err error, what string) error {
		if errors.Is(err, kerr.UnstableOffsetCommit) {
			return fmt.Errorf("a transaction that commits offsets of %s is still open (its previous owner's)", what)
		}
		return fmt.Errorf("fetching the committed offsets of %s: %w", what, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, unstable(err, fmt.Sprintf("partition %d of %v", p, topics))
	}
	out := map[string]map[int32]kgo.EpochOffset{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return nil, unstable(err, fmt.Sprintf("%s[%d]", rt.Topic, rp.Partition))
			}
			if rp.Offset >= 0 {
				out[rt.Topic] = map[int32]kgo.EpochOffset{rp.Partition: {Epoch: rp.LeaderEpoch, Offset: rp.Offset}}
			}
		}
	}
	return out, nil
}
