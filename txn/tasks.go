package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tasks is the set of open tasks of one worker, created on the first
// record of their partition and dropped whenever their uncommitted effects
// must be forgotten. It is used by the worker's loop goroutine only.
type tasks struct {
	topo    Topology
	cfg     TaskConfig
	subOf   map[string]int
	open    map[TaskID]Task
	tails   map[TaskID]*changelogTail // of the open stateful tasks
	metrics *metrics
	// restore brings a new stateful task up to date with its changelogs,
	// and with its input up to the committed offsets (Worker.restore).
	restore func(ctx context.Context, id TaskID, st StatefulTask, committed map[string]int64) error
	// committed returns the group's committed offsets as the session's
	// client knows them: where processing resumes. Nil: none known.
	committed func() map[string]map[int32]kgo.EpochOffset
	log       *slog.Logger
}

func newTasks(topo Topology, cfg TaskConfig, m *metrics) *tasks {
	subOf := map[string]int{}
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			subOf[t] = s.ID
		}
	}
	return &tasks{topo: topo, cfg: cfg, subOf: subOf, open: map[TaskID]Task{}, tails: map[TaskID]*changelogTail{}, metrics: m}
}

// add makes t the open task id.
func (ts *tasks) add(id TaskID, t Task) {
	ts.open[id] = t
	ts.metrics.tasks.Set(float64(len(ts.open)))
	if st, ok := t.(StatefulTask); ok {
		tail := &changelogTail{}
		for topic := range st.RestoreFrom() {
			tail.topics = append(tail.topics, topic)
		}
		tail.last = make([]*kgo.Record, len(tail.topics))
		ts.tails[id] = tail
	}
}

// remove closes the open task id and forgets it.
func (ts *tasks) remove(id TaskID) error {
	t := ts.open[id]
	delete(ts.open, id)
	delete(ts.tails, id)
	ts.metrics.tasks.Set(float64(len(ts.open)))
	if t == nil {
		return nil
	}
	return t.Close()
}

// changelogTail is what a stateful task wrote to its changelogs in the
// open transaction: the last record produced to each. Once the broker
// acknowledged it, its Offset (set by franz-go) tells where the task's
// checkpoint moves when the transaction commits: the records of one
// partition are acknowledged in order, so the last has the highest offset.
// Tracking it here, on the loop goroutine that hands every output to the
// producer anyway, spares a map update under a lock in every record's
// produce promise.
type changelogTail struct {
	topics []string      // the task's changelog topics
	last   []*kgo.Record // per topic; nil: none produced
}

// see notes an output of the task.
func (c *changelogTail) see(r *kgo.Record) {
	for i, topic := range c.topics {
		if r.Topic == topic {
			c.last[i] = r
			return
		}
	}
}

// next returns, for each changelog written since the last call, the
// offset after its last record, and forgets the records. Call it after
// every produced record was acknowledged. A record without an offset
// (franz-go reports -1 when the broker did not say) leaves its changelog
// out: the checkpoint then stays behind, and a restore replays more,
// which is safe.
func (c *changelogTail) next() map[string]int64 {
	next := make(map[string]int64, len(c.topics))
	for i, r := range c.last {
		if r != nil && r.Offset >= 0 {
			next[c.topics[i]] = r.Offset + 1
		}
	}
	clear(c.last)
	return next
}

// prepare creates (and restores) the tasks of every partition in f, so that
// restores happen before a transaction begins. New tasks are created in
// parallel: each opens its database and reads its changelogs' ends (and
// tails) over its own connection, and a worker taking over or restarting
// with many tasks would otherwise wait for them one after another.
func (ts *tasks) prepare(ctx context.Context, f kgo.Fetches) error {
	var ids []TaskID
	var err error
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		var id TaskID
		if id, err = ts.idOf(p.Topic, p.Partition); err == nil && ts.open[id] == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	})
	if err != nil {
		return err
	}
	made := make([]Task, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, maxParallelTaskCreations)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			made[i], errs[i] = ts.create(ctx, id)
		})
	}
	wg.Wait()
	for i, t := range made {
		if t != nil {
			ts.add(ids[i], t)
		}
	}
	return errors.Join(errs...)
}

// maxParallelTaskCreations bounds the tasks prepare creates at once.
const maxParallelTaskCreations = 8

// idOf returns the task of a source topic's partition.
func (ts *tasks) idOf(topic string, partition int32) (TaskID, error) {
	sub, ok := ts.subOf[topic]
	if !ok {
		return TaskID{}, fmt.Errorf("txn: polled topic %q is not a source of the topology", topic)
	}
	return TaskID{Subtopology: sub, Partition: partition}, nil
}

// get returns the task id, creating it.
func (ts *tasks) get(ctx context.Context, id TaskID) (Task, error) {
	if t := ts.open[id]; t != nil {
		return t, nil
	}
	t, err := ts.create(ctx, id)
	if err != nil {
		return nil, err
	}
	ts.add(id, t)
	return t, nil
}

// create instantiates a task and restores its state. It may run for
// several tasks at once (Topology.NewTask and restore are safe for that);
// it does not touch ts.open.
func (ts *tasks) create(ctx context.Context, id TaskID) (Task, error) {
	t, err := ts.topo.NewTask(id, ts.cfg)
	if err != nil {
		return nil, &FatalError{Cause: fmt.Sprintf("creating task %d_%d failed", id.Subtopology, id.Partition), Err: err}
	}
	if st, ok := t.(StatefulTask); ok && ts.restore != nil {
		if err := ts.restore(ctx, id, st, ts.committedOf(id)); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// committedOf returns the committed offset of each of task id's source
// partitions that has one.
func (ts *tasks) committedOf(id TaskID) map[string]int64 {
	if ts.committed == nil {
		return nil
	}
	all := ts.committed()
	offs := map[string]int64{}
	for topic, sub := range ts.subOf {
		if sub != id.Subtopology {
			continue
		}
		if eo, ok := all[topic][id.Partition]; ok && eo.Offset >= 0 {
			offs[topic] = eo.Offset
		}
	}
	return offs
}

// commit applies the pending state of every stateful task after its
// transaction committed, every output acknowledged, with the offsets
// after the last changelog records it produced (changelogTail). Each task
// applies in the background (StatefulTask.Commit), so the applies of the
// tasks run in parallel with each other and with the next transaction. A
// task whose apply fails is dropped: re-created, it replays the changelog
// from its checkpoint. Then every task may reuse its outputs' records
// (Recycler): none is referenced any more.
func (ts *tasks) commit() {
	for id, tail := range ts.tails {
		st := ts.open[id].(StatefulTask)
		if err := st.Commit(tail.next()); err != nil {
			ts.log.Error("applying committed state failed; the task will restore from its changelog", "task", fmt.Sprintf("%d_%d", id.Subtopology, id.Partition), "err", err)
			ts.remove(id)
		}
	}
	for _, t := range ts.open {
		if r, ok := t.(Recycler); ok {
			r.Recycle()
		}
	}
}

// input is one fetched partition's records with the task they go to
// and, for a stateful task, its changelog tail.
type input struct {
	p    kgo.FetchTopicPartition
	t    Task
	tail *changelogTail // nil: a stateless task
}

// input returns the input of p, creating its task if needed.
func (ts *tasks) input(ctx context.Context, p kgo.FetchTopicPartition) (input, error) {
	id, err := ts.idOf(p.Topic, p.Partition)
	if err != nil {
		return input{}, err
	}
	t, err := ts.get(ctx, id)
	if err != nil {
		return input{}, err
	}
	return input{p: p, t: t, tail: ts.tails[id]}, nil
}

// process runs in's records through its task and hands every output to
// produce; out is a buffer for the task's outputs, returned for reuse. It
// changes nothing in ts, so lanes call it concurrently for different
// tasks.
func (ts *tasks) process(in input, out []*kgo.Record, produce func(*kgo.Record)) ([]*kgo.Record, error) {
	t, tail := in.t, in.tail
	var err error
	before := t.Stats()
	for _, rec := range in.p.Records {
		out, err = t.Process(rec, out[:0])
		for _, o := range out {
			if tail != nil {
				tail.see(o)
			}
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
// from committed state (the hook where state is re-restored).
func (ts *tasks) drop() error {
	var errs []error
	for id := range ts.open {
		errs = append(errs, ts.remove(id))
	}
	return errors.Join(errs...)
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
			id := TaskID{Subtopology: sub, Partition: p}
			errs = append(errs, ts.remove(id))
		}
	}
	return errors.Join(errs...)
}
