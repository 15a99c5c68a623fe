package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tasks is the set of open tasks of one worker, created on the first
// record of their partition and dropped whenever their uncommitted effects
// must be forgotten. It is used by the worker's loop goroutine only.
type tasks struct {
	subOf    map[string]int
	open     map[topology.TaskID]topology.Task
	stateful map[topology.TaskID]topology.StatefulTask // the open stateful tasks
	metrics  *metrics
	log      *slog.Logger
}

func newTasks(topo topology.Topology, m *metrics) *tasks {
	subOf := map[string]int{}
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			subOf[t] = s.ID
		}
	}
	return &tasks{subOf: subOf, open: map[topology.TaskID]topology.Task{}, stateful: map[topology.TaskID]topology.StatefulTask{}, metrics: m}
}

// add makes t the open task id.
func (ts *tasks) add(id topology.TaskID, t topology.Task) {
	ts.open[id] = t
	if st, ok := t.(topology.StatefulTask); ok {
		ts.stateful[id] = st
	}
	ts.metrics.tasks.Set(float64(len(ts.open)))
}

// remove closes the open task id and forgets it.
func (ts *tasks) remove(id topology.TaskID) error {
	t := ts.open[id]
	delete(ts.open, id)
	delete(ts.stateful, id)
	ts.metrics.tasks.Set(float64(len(ts.open)))
	if t == nil {
		return nil
	}
	return t.Close()
}

// missing returns the tasks that the partitions with records in f need and
// that are not open: the loop creates and restores them (Worker.openTasks)
// before a transaction begins.
func (ts *tasks) missing(f kgo.Fetches) ([]topology.TaskID, error) {
	var ids []topology.TaskID
	var err error
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		var id topology.TaskID
		if id, err = ts.idOf(p.Topic, p.Partition); err == nil && ts.open[id] == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	})
	return ids, err
}

// idOf returns the task of a source topic's partition.
func (ts *tasks) idOf(topic string, partition int32) (topology.TaskID, error) {
	sub, ok := ts.subOf[topic]
	if !ok {
		return topology.TaskID{}, fmt.Errorf("txn: polled topic %q is not a source of the topology", topic)
	}
	return topology.TaskID{Subtopology: sub, Partition: partition}, nil
}

// sourcesOf returns the source topics of task id's sub-topology.
func (ts *tasks) sourcesOf(id topology.TaskID) []string {
	var topics []string
	for topic, sub := range ts.subOf {
		if sub == id.Subtopology {
			topics = append(topics, topic)
		}
	}
	return topics
}

// commit applies the pending state of every stateful task after its
// transaction committed, every output acknowledged (each task moves its
// checkpoint to the offsets the producer set on its changelog records).
// Each task applies in the background (StatefulTask.Commit), so the
// applies of the tasks run in parallel with each other and with the next
// transaction. A task whose apply fails is dropped: re-created, it
// replays the changelog from its checkpoint. Then every task may reuse
// its outputs' records (Recycler): none is referenced any more.
func (ts *tasks) commit() {
	for id, st := range ts.stateful {
		if err := st.Commit(); err != nil {
			ts.log.Error("applying committed state failed; the task will restore from its changelog", "task", fmt.Sprintf("%d_%d", id.Subtopology, id.Partition), "err", err)
			ts.closeTask(id, "dropping it after a failed apply")
		}
	}
	ts.recycle()
}

// discard forgets what every task did in a transaction that did not
// commit, after every output was flushed: each stateful task discards its
// pending state and stays open (one that cannot is closed, and restored
// when its partition's next record comes), and every task may reuse its
// outputs' records.
func (ts *tasks) discard() {
	for id, st := range ts.stateful {
		if err := st.Discard(); err != nil {
			ts.log.Error("discarding a task's pending state failed; the task will restore from its changelog", "task", fmt.Sprintf("%d_%d", id.Subtopology, id.Partition), "err", err)
			ts.closeTask(id, "dropping it after a failed discard")
		}
	}
	ts.recycle()
}

// recycle tells every task that the runtime holds none of its outputs.
func (ts *tasks) recycle() {
	for _, t := range ts.open {
		if r, ok := t.(topology.Recycler); ok {
			r.Recycle()
		}
	}
}

// input is one fetched partition's records with the task they go to.
type input struct {
	p kgo.FetchTopicPartition
	t topology.Task
}

// prepared reports whether every partition with records in f has its task
// open.
func (ts *tasks) prepared(f kgo.Fetches) bool {
	ok := true
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if !ok || len(p.Records) == 0 {
			return
		}
		id, err := ts.idOf(p.Topic, p.Partition)
		ok = err != nil || ts.open[id] != nil // an unknown topic fails in input
	})
	return ok
}

// errUnprepared is the error of a poll whose records need a task that is
// not open: tasks are created (and restored) by prepare only, never while
// a transaction is open.
var errUnprepared = errors.New("txn: internal error: a record's task was not prepared before the transaction began")

// input returns the input of p, whose task prepare opened.
func (ts *tasks) input(p kgo.FetchTopicPartition) (input, error) {
	id, err := ts.idOf(p.Topic, p.Partition)
	if err != nil {
		return input{}, err
	}
	t := ts.open[id]
	if t == nil {
		return input{}, fmt.Errorf("%w: %s[%d]", errUnprepared, p.Topic, p.Partition)
	}
	return input{p: p, t: t}, nil
}

// process runs in's records through its task and hands every output to
// produce; out is a buffer for the task's outputs, returned for reuse. It
// changes nothing in ts, so lanes call it concurrently for different
// tasks.
func (ts *tasks) process(in input, out []*kgo.Record, produce func(*kgo.Record)) ([]*kgo.Record, error) {
	t := in.t
	var err error
	before := t.Stats()
	for _, rec := range in.p.Records {
		out, err = t.Process(rec, out[:0])
		for _, o := range out {
			produce(o)
		}
		if err != nil {
			return out, &FatalError{Cause: "a record failed and the topology's error policy is to fail", Err: err}
		}
	}
	after := t.Stats()
	ts.metrics.records.Add(float64(after.Processed - before.Processed))
	ts.metrics.deadLetters.Add(float64(after.DeadLetter - before.DeadLetter))
	ts.metrics.skipped.Add(float64(after.Skipped - before.Skipped))
	return out, nil
}

// drop closes every task: their effects since the last commit are
// forgotten, and the next record of each partition creates its task anew
// from committed state (the hook where state is re-restored). A task
// that fails to close is logged: it is gone either way, and its next
// incarnation restores what its database misses.
func (ts *tasks) drop() {
	for id := range ts.open {
		ts.closeTask(id, "dropping every task")
	}
}

// closeTask closes and forgets task id, logging a failure to close; why
// says why it closes.
func (ts *tasks) closeTask(id topology.TaskID, why string) {
	if err := ts.remove(id); err != nil {
		ts.log.Warn("closing a task failed; it restores from its changelog when it comes back", "task", fmt.Sprintf("%d_%d", id.Subtopology, id.Partition), "while", why, "err", err)
	}
}

// close closes the tasks of partitions this worker no longer owns.
func (ts *tasks) close(revoked map[string][]int32) error {
	var errs []error
	for topic, parts := range revoked {
		sub, ok := ts.subOf[topic]
		if !ok {
			continue
		}
		for _, p := range parts {
			id := topology.TaskID{Subtopology: sub, Partition: p}
			errs = append(errs, ts.remove(id))
		}
	}
	return errors.Join(errs...)
}
