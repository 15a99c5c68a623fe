// Package streamtest runs a topology synchronously, with no broker, for
// tests. It runs the runtime's own batch core (package txn/batch) over the
// same per-record step (topology.Task from Topology.NewTask), one batch per
// piped record, so what passes here behaves the same in production, minus
// Kafka itself.
//
//	d := streamtest.New(topo)
//	in := streamtest.Input(d, "orders", serde.String, serde.JSON[Order]())
//	out := streamtest.Output(d, "large-orders", serde.String, serde.JSON[Order]())
//	in.Pipe("o-1", Order{Cents: 12000}, ts)
//	recs, err := out.ReadAll()
//
// Records written to a topic the topology also reads are fed back in, in
// order, before Pipe returns, as they would be through Kafka. The DLQ is an
// ordinary output topic (see Driver.DLQ).
//
// A Driver is not safe for concurrent use.
package streamtest

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Driver runs one topology on in-memory topics.
type Driver struct {
	topo       *stream.Topology
	now        time.Time
	partitions map[string]int32 // configured counts
	topics     map[string]*topic
	last, prev *topic // the topics of the two previous lookups
	core       *batch.Core
	part       kgo.Partitioner

	global      topology.Global // the global tables, if any
	stateDir    string          // tasks' state, when the topology has stores
	ownStateDir bool            // created by New, removed by Close
	stateDirErr error

	in      kgo.Record        // reused input record; tasks never retain it
	poll    kgo.Fetches       // reused one-record poll for the core
	produce func(*kgo.Record) // d.produced, made once
	pending []*kgo.Record     // produced records to feed back, FIFO
	touched []*topic          // written by the batch of the current Pipe
}

// topic is one in-memory topic: its partitions' next offsets, the records
// written to it and not yet read, and whether the topology reads it.
type topic struct {
	name    string
	offsets []int64
	rr      int32 // round-robin partition for records without key
	tp      kgo.TopicPartitioner
	sub     int
	source  bool
	global  bool // a global table's topic
	manual  bool // records carry their partition (changelogs)
	unread  []*kgo.Record
	mark    int    // len(unread) when the current Pipe first wrote to it; -1: not yet
	copies  copies // of the records tasks produced to it
}

// Option configures a Driver.
type Option func(*Driver)

// WithPartitions gives topic n partitions (default 1). Records are assigned
// partitions like Kafka's default partitioner: murmur2 of the key, and
// round-robin for records without a key.
func WithPartitions(topic string, n int32) Option {
	return func(d *Driver) { d.partitions[topic] = n }
}

// WithWallClock sets the driver's initial wall-clock time, which processors
// see through ProcessorContext.Now. The default is 2026-01-01T00:00:00Z; it moves
// only with AdvanceWallClock.
func WithWallClock(t time.Time) Option {
	return func(d *Driver) { d.now = t }
}

// WithStateDir keeps the tasks' state in dir instead of a temporary
// directory that Close removes.
func WithStateDir(dir string) Option {
	return func(d *Driver) { d.stateDir = dir }
}

// New returns a driver for topo. Close it to close the tasks' processors
// and remove their state.
//
// The driver runs the runtime's batch core (package txn/batch): every Pipe
// is one batch. Stores behave as in the runtime: each task has its own
// Pebble database; after a Pipe the batch commits, as the runtime's does
// after its transaction commits; a Pipe that fails (under
// stream.OnErrorFail) aborts its batch: the tasks' state goes back to the
// last commit, and what the batch wrote is never read, as a read_committed
// reader never sees an aborted transaction.
func New(topo *stream.Topology, opts ...Option) *Driver {
	d := &Driver{
		topo:       topo,
		now:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		partitions: map[string]int32{},
		topics:     map[string]*topic{},
		core:       batch.New(topo, batch.Config{Inline: true}),
		part:       kgo.StickyKeyPartitioner(nil),
		poll:       kgo.Fetches{{Topics: []kgo.FetchTopic{{Partitions: []kgo.FetchPartition{{Records: make([]*kgo.Record, 1)}}}}}},
	}
	d.produce = d.produced
	for _, o := range opts {
		o(d)
	}
	if d.stateDir == "" && hasStores(topo) {
		d.stateDir, d.stateDirErr = os.MkdirTemp("", "streamtest-state-")
		d.ownStateDir = d.stateDirErr == nil
	}
	if d.stateDirErr == nil {
		// In memory: the driver is the only worker and never restarts.
		d.global, d.stateDirErr = topo.NewGlobal("")
	}
	return d
}

func hasStores(topo *stream.Topology) bool {
	for _, it := range topo.InternalTopics() {
		if it.Purpose == "changelog" {
			return true
		}
	}
	return false
}

// AdvanceWallClock moves the injected wall clock forward by by, then runs,
// in one batch, the wall-clock punctuators of the open tasks that are
// then due (each once, however far the clock moved; see stream.Schedule),
// with the records they write to topics the topology reads. A task opens
// at its partition's first record. The error is a punctuator's under
// stream.OnErrorFail (a *stream.PunctuationError): the batch is aborted,
// as a failing Pipe's.
func (d *Driver) AdvanceWallClock(by time.Duration) error {
	d.now = d.now.Add(by)
	if due, ok := d.core.NextPunctuation(); !ok || d.now.Before(due) {
		return nil
	}
	return d.batch(func() error {
		err := d.core.Punctuate(d.now)
		if pe, ok := errors.AsType[*batch.PunctuationError](err); ok {
			return pe.Err // the punctuator's error, as the topology returned it
		}
		return err
	})
}

// Now returns the injected wall-clock time.
func (d *Driver) Now() time.Time { return d.now }

// Stats returns the counters of all tasks added up.
func (d *Driver) Stats() topology.TaskStats { return d.core.Stats() }

// Close closes every task.
func (d *Driver) Close() error {
	errs := []error{d.core.Close()}
	if d.global != nil {
		errs = append(errs, d.global.Close())
		d.global = nil
	}
	if d.ownStateDir {
		errs = append(errs, os.RemoveAll(d.stateDir))
		d.ownStateDir = false
	}
	return errors.Join(errs...)
}

// PipeBytes feeds one raw record to topic, as a producer would write it:
// use it for input no serde would produce, such as malformed JSON. A nil key
// or value is a Kafka null.
func (d *Driver) PipeBytes(topic string, key, value []byte, ts time.Time) error {
	return d.pipe(topic, key, value, ts, nil)
}

func (d *Driver) pipe(topic string, key, value []byte, ts time.Time, headers []kgo.RecordHeader) error {
	d.in = kgo.Record{Topic: topic, Key: key, Value: value, Timestamp: ts, Headers: headers}
	return d.batch(func() error { return d.run(d.place(&d.in), &d.in) })
}

// batch runs one batch: work, which hands the tasks' outputs to
// d.produce, then the records they wrote to topics the topology reads;
// the batch commits unless that fails.
func (d *Driver) batch(work func() error) error {
	d.core.Begin(d.produce)
	err := work()
	if err == nil && len(d.pending) > 0 {
		r := d.pending[0]
		d.pending[0] = nil
		d.pending = d.pending[1:]
		err = d.run(d.topic(r.Topic), r)
	}
	if _, ferr := d.core.Finish(); err == nil {
		err = ferr
	}
	clear(d.pending)
	d.pending = d.pending[:0]
	o := batch.Committed
	if err != nil {
		o = batch.Aborted // as the runtime aborts: state goes back to the last commit
	}
	for _, t := range d.touched {
		if o == batch.Aborted {
			// As read_committed readers never see an aborted
			// transaction's records; their offsets stay taken.
			clear(t.unread[t.mark:])
			t.unread = t.unread[:t.mark]
		}
		t.mark = -1
	}
	clear(d.touched)
	d.touched = d.touched[:0]
	_, aerr := d.core.Advance(o, nil)
	return errors.Join(err, aerr)
}

// topic returns the state of the named topic, creating it on first use.
func (d *Driver) topic(name string) *topic {
	if d.last != nil && d.last.name == name {
		return d.last
	}
	if d.prev != nil && d.prev.name == name {
		d.last, d.prev = d.prev, d.last
		return d.last
	}
	t := d.topics[name]
	if t == nil {
		n := d.partitionsOf(name)
		t = &topic{name: name, offsets: make([]int64, n), tp: d.part.ForTopic(name), mark: -1}
		t.sub, t.source = d.topo.SubtopologyOf(name)
		if d.global != nil {
			t.global = slices.Contains(d.global.Topics(), name)
		}
		for _, it := range d.topo.InternalTopics() {
			if it.Name == name && it.Purpose == "changelog" {
				t.manual = true
			}
		}
		d.topics[name] = t
	}
	d.last, d.prev = t, d.last
	return t
}

// partitionsOf returns a topic's partition count: as configured (default
// 1), except for repartition topics, which the runtime creates with the
// partition count of the sub-topology that writes them.
func (d *Driver) partitionsOf(name string) int32 {
	for _, it := range d.topo.InternalTopics() {
		if it.Name == name && it.Purpose == "repartition" {
			for _, sub := range d.topo.Subtopologies() {
				if sub.ID == it.Subtopology {
					return int32(len(d.topic(sub.SourceTopics[0]).offsets))
				}
			}
		}
	}
	if n := d.partitions[name]; n > 0 {
		return n
	}
	return 1
}

// place assigns a partition and the next offset, as a broker would.
func (d *Driver) place(r *kgo.Record) *topic {
	t := d.topic(r.Topic)
	n := int32(len(t.offsets))
	switch {
	case t.manual:
		if r.Partition < 0 || r.Partition >= n {
			n = r.Partition + 1
			t.offsets = append(t.offsets, make([]int64, int(n)-len(t.offsets))...)
		}
	case n == 1:
		r.Partition = 0
	case r.Key == nil:
		r.Partition = t.rr % n
		t.rr++
	default:
		r.Partition = int32(t.tp.Partition(r, int(n)))
	}
	r.Offset = t.offsets[r.Partition]
	t.offsets[r.Partition]++
	return t
}

// run processes r and then, breadth-first, every produced record that
// lands on a topic the topology reads.
func (d *Driver) run(t *topic, r *kgo.Record) error {
	for {
		if err := d.process(t, r); err != nil {
			return err
		}
		if len(d.pending) == 0 {
			return nil
		}
		r = d.pending[0]
		d.pending[0] = nil
		d.pending = d.pending[1:]
		t = d.topic(r.Topic)
	}
}

func (d *Driver) process(tp *topic, r *kgo.Record) error {
	if tp.global {
		// As the runtime's global reader: applied, then visible.
		if err := d.global.Apply(r); err != nil {
			return err
		}
		return d.global.Flush()
	}
	if !tp.source {
		return fmt.Errorf("streamtest: topic %q is not read by the topology", r.Topic)
	}
	if id := (topology.TaskID{Subtopology: tp.sub, Partition: r.Partition}); !d.core.Has(id) {
		if d.stateDirErr != nil {
			return fmt.Errorf("streamtest: state directory: %w", d.stateDirErr)
		}
		t, err := d.topo.NewTask(id, topology.TaskConfig{Clock: d.Now, StateDir: d.stateDir, Global: d.global})
		if err != nil {
			return err
		}
		d.core.Add(id, t)
	}
	ft := &d.poll[0].Topics[0]
	ft.Topic = r.Topic
	ft.Partitions[0].Partition = r.Partition
	ft.Partitions[0].Records[0] = r
	err := d.core.Process(d.poll)
	ft.Partitions[0].Records[0] = nil
	if te, ok := errors.AsType[*batch.TaskError](err); ok {
		return te.Err // the processor's own error, as the topology returned it
	}
	return err
}

// produced takes a task's output as a broker would: it keeps a copy in
// its topic, feeds it back when the topology reads that topic, and sets
// its offset on the task's record, as the producer does (a changelog
// record's offset is where its task's checkpoint moves).
func (d *Driver) produced(o *kgo.Record) {
	c := d.topic(o.Topic).copies.of(o)
	ot := d.place(c)
	o.Offset = c.Offset
	if ot.mark < 0 {
		ot.mark = len(ot.unread)
		d.touched = append(d.touched, ot)
	}
	ot.unread = append(ot.unread, c)
	if ot.source {
		d.pending = append(d.pending, c)
	}
}
