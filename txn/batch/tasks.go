package batch

import (
	"errors"
	"fmt"
	"slices"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tasks is the set of open tasks of one loop, created before the batch
// that first needs them and closed when their partition goes or their
// state cannot be trusted. It is used by the loop's goroutine only;
// lanes read it concurrently while a poll is processed, and nothing
// changes it then.
type tasks struct {
	subOf map[string]int
	open  map[topology.TaskID]topology.Task
	list  []openTask // the open tasks, for the per-batch walks

	// The last lookup, which the next one mostly repeats (a test driver
	// feeds one record at a time).
	lastTopic string
	lastSub   int
	lastID    topology.TaskID
	lastTask  topology.Task // nil: none
}

// openTask is an open task with the interfaces it implements.
type openTask struct {
	id       topology.TaskID
	stateful topology.StatefulTask // or nil
	recycler topology.Recycler     // or nil
	punct    topology.Punctuator   // or nil
	flusher  topology.Flusher      // or nil
}

func newTasks(topo topology.Topology) *tasks {
	subOf := map[string]int{}
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			subOf[t] = s.ID
		}
	}
	return &tasks{subOf: subOf, open: map[topology.TaskID]topology.Task{}}
}

// add makes t the open task id.
func (ts *tasks) add(id topology.TaskID, t topology.Task) {
	if ts.open[id] != nil {
		panic("batch: task " + name(id) + " added while open")
	}
	ts.open[id] = t
	ot := openTask{id: id}
	ot.stateful, _ = t.(topology.StatefulTask)
	ot.recycler, _ = t.(topology.Recycler)
	ot.punct, _ = t.(topology.Punctuator)
	ot.flusher, _ = t.(topology.Flusher)
	ts.list = append(ts.list, ot)
}

// remove closes the open task id and forgets it.
func (ts *tasks) remove(id topology.TaskID) error {
	t := ts.open[id]
	if t == nil {
		return nil
	}
	if ts.lastID == id {
		ts.lastTask = nil
	}
	delete(ts.open, id)
	ts.list = slices.DeleteFunc(ts.list, func(ot openTask) bool { return ot.id == id })
	if err := t.Close(); err != nil {
		return fmt.Errorf("closing task %s: %w", name(id), err)
	}
	return nil
}

// missing returns the tasks that the partitions with records in f need and
// that are not open.
func (ts *tasks) missing(f kgo.Fetches) ([]topology.TaskID, error) {
	var ids []topology.TaskID
	var err error
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		var id topology.TaskID
		if id, err = ts.idOf(p.Topic, p.Partition); err == nil && ts.get(id) == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	})
	return ids, err
}

// ErrNotSource is the error of a poll with records of a topic that no
// sub-topology reads.
var ErrNotSource = errors.New("batch: polled topic is not a source of the topology")

// idOf returns the task of a source topic's partition.
func (ts *tasks) idOf(topic string, partition int32) (topology.TaskID, error) {
	if topic != ts.lastTopic || topic == "" {
		sub, ok := ts.subOf[topic]
		if !ok {
			return topology.TaskID{}, fmt.Errorf("%w: %q", ErrNotSource, topic)
		}
		ts.lastTopic, ts.lastSub = topic, sub
	}
	return topology.TaskID{Subtopology: ts.lastSub, Partition: partition}, nil
}

// get returns the open task id, or nil.
func (ts *tasks) get(id topology.TaskID) topology.Task {
	if ts.lastTask != nil && ts.lastID == id {
		return ts.lastTask
	}
	t := ts.open[id]
	if t != nil {
		ts.lastID, ts.lastTask = id, t
	}
	return t
}

// sourcesOf returns the source topics of task id's sub-topology.
func (ts *tasks) sourcesOf(id topology.TaskID) []string {
	var topics []string
	for topic, sub := range ts.subOf {
		if sub == id.Subtopology {
			topics = append(topics, topic)
		}
	}
	slices.Sort(topics)
	return topics
}

// commit applies the pending state of every stateful task after its
// transaction committed, every output acknowledged (each task moves its
// checkpoint to the offsets the producer set on its changelog records).
// Each task applies in the background (StatefulTask.Commit), so the
// applies of the tasks run in parallel with each other and with the next
// transaction. A task whose apply fails is closed: re-created, it replays
// the changelog from its checkpoint. Then every task may reuse its
// outputs' records (Recycler): none is referenced any more. The error
// names every task closed, and why.
func (ts *tasks) commit() error {
	return ts.each(topology.StatefulTask.Commit, true, "applying its committed state")
}

// discard forgets what every task did in a transaction that did not
// commit, after every output was flushed: each stateful task discards its
// pending state and stays open (one that cannot is closed, and restored
// before its partition's next batch), and every task may reuse its
// outputs' records.
func (ts *tasks) discard() error {
	return ts.each(topology.StatefulTask.Discard, false, "discarding its pending state")
}

// each calls step on every stateful task and closes those it fails for
// (doing says what failed, for the error); then it tells every task left
// with punctuators whether the batch committed, and every task left that
// the runtime holds none of its outputs.
func (ts *tasks) each(step func(topology.StatefulTask) error, committed bool, doing string) error {
	var failed []topology.TaskID
	var errs []error
	for _, ot := range ts.list {
		if ot.stateful == nil {
			continue
		}
		if err := step(ot.stateful); err != nil {
			failed = append(failed, ot.id)
			errs = append(errs, fmt.Errorf("batch: task %s closed (it restores from its changelog) after %s failed: %w", name(ot.id), doing, err))
		}
	}
	for _, id := range failed {
		errs = append(errs, ts.remove(id))
	}
	for _, ot := range ts.list {
		if ot.punct != nil {
			ot.punct.Settle(committed)
		}
		if ot.recycler != nil {
			ot.recycler.Recycle()
		}
	}
	return errors.Join(errs...)
}

// input is one fetched partition's records with the task they go to.
type input struct {
	records []*kgo.Record
	id      topology.TaskID
	t       topology.Task
}

// ErrUnprepared is the error of a poll whose records need a task that is
// not open: the loop adds tasks (Core.Add) only while no transaction is
// open, because creating one may restore its state.
var ErrUnprepared = errors.New("batch: a record's task was not added before the batch")

// input returns the input of a topic's partition's records, whose task
// is open.
func (ts *tasks) input(topic string, partition int32, records []*kgo.Record) (input, error) {
	id, err := ts.idOf(topic, partition)
	if err != nil {
		return input{}, err
	}
	t := ts.get(id)
	if t == nil {
		return input{}, fmt.Errorf("%w: %s[%d]", ErrUnprepared, topic, partition)
	}
	return input{records: records, id: id, t: t}, nil
}

// TaskError is a record's failure in its task, under the topology's fail
// error policy (other policies route or skip failed records and never
// return one).
type TaskError struct {
	Task topology.TaskID
	// Topic, Partition and Offset locate the record that failed.
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("task %s: record %s[%d]@%d: %v", name(e.Task), e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the task's error.
func (e *TaskError) Unwrap() error { return e.Err }

// process runs in's records through its task and hands every output to
// produce; out is a buffer for the task's outputs, returned for reuse,
// and stats collects the task's counters. It changes nothing in ts, so
// lanes call it concurrently for different tasks.
func process(in input, out []*kgo.Record, produce func(*kgo.Record), stats *topology.TaskStats) ([]*kgo.Record, error) {
	t := in.t
	before := t.Stats()
	var err error
	for _, rec := range in.records {
		out, err = t.Process(rec, out[:0])
		for _, o := range out {
			produce(o)
		}
		if err != nil {
			err = &TaskError{Task: in.id, Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Err: err}
			break
		}
	}
	if f, ok := t.(topology.Flusher); ok && err == nil {
		// What the poll's records held back goes out with them, produced
		// while the batch goes on; Finish flushes what is left.
		out, err = f.Flush(out[:0])
		for _, o := range out {
			produce(o)
		}
		if err != nil {
			last := in.records[len(in.records)-1]
			err = &TaskError{Task: in.id, Topic: last.Topic, Partition: last.Partition, Offset: last.Offset, Err: fmt.Errorf("flush: %w", err)}
		}
	}
	after := t.Stats()
	after.Sub(before)
	stats.Add(after)
	return out, err
}

// drop closes every task: their effects since the last commit are
// forgotten, and each is created anew from committed state before its
// partition's next batch. The error names every task that failed to
// close: it is gone either way, and its next incarnation restores what
// its database misses.
func (ts *tasks) drop() error {
	var errs []error
	for len(ts.list) > 0 {
		errs = append(errs, ts.remove(ts.list[len(ts.list)-1].id))
	}
	return errors.Join(errs...)
}

// close closes the tasks of partitions this worker no longer owns.
func (ts *tasks) close(revoked map[string][]int32) error {
	if len(revoked) == 0 {
		return nil
	}
	var errs []error
	for topic, parts := range revoked {
		sub, ok := ts.subOf[topic]
		if !ok {
			continue
		}
		for _, p := range parts {
			errs = append(errs, ts.remove(topology.TaskID{Subtopology: sub, Partition: p}))
		}
	}
	return errors.Join(errs...)
}

// name is a task's name in logs and errors: sub-topology_partition.
func name(id topology.TaskID) string {
	return fmt.Sprintf("%d_%d", id.Subtopology, id.Partition)
}
