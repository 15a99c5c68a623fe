package batch

import (
	"errors"
	"fmt"
	"iter"
	"maps"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Core.
type Config struct {
	// Lanes is how many goroutines run a poll's records through their
	// tasks; a task always runs on the lane its partition number picks
	// (partition modulo Lanes). Default 1.
	Lanes int
	// Inline hands each output to the batch's produce function on the
	// goroutine that processed its record, before Process returns,
	// instead of from a producing goroutine per lane. With more than one
	// lane, produce is then called from several goroutines at once.
	Inline bool
}

// Core runs batches of polled records through their tasks and decides,
// from each batch's outcome alone, what becomes of the tasks and of the
// loop's session. It does no network I/O and reads no clock: the loop
// polls, creates tasks (which may restore their state), produces,
// commits, and tells the core what happened.
//
// One batch is, in order: Begin; Process for each poll; Finish; Advance
// with the outcome. Tasks are added (Add) before the Process that needs
// them; under exactly-once only between batches, because creating a task
// may restore its state, which must never run inside a transaction.
//
// A Core is used by one goroutine, the loop's; while Process runs, it
// uses one goroutine per lane more, and, unless Config.Inline, each lane
// produces from a goroutine of its own between Begin and Finish.
type Core struct {
	tasks *tasks
	lanes *lanes
}

// New returns a core for topo with no open task.
func New(topo topology.Topology, cfg Config) *Core {
	ts := newTasks(topo)
	return &Core{tasks: ts, lanes: newLanes(ts, cfg.Lanes, cfg.Inline)}
}

// Missing returns the tasks that the partitions with records in f need and
// that are not open, each once. It fails on a topic the topology does not
// read (ErrNotSource).
func (c *Core) Missing(f kgo.Fetches) ([]topology.TaskID, error) {
	return c.tasks.missing(f)
}

// SourcesOf returns the source topics of task id's sub-topology, sorted.
func (c *Core) SourcesOf(id topology.TaskID) []string { return c.tasks.sourcesOf(id) }

// Add makes t, created (and restored) by the loop, the open task id. It
// panics if a task is open under id already (Missing never returns one).
func (c *Core) Add(id topology.TaskID, t topology.Task) { c.tasks.add(id, t) }

// Open returns how many tasks are open.
func (c *Core) Open() int { return len(c.tasks.open) }

// Has reports whether task id is open.
func (c *Core) Has(id topology.TaskID) bool { return c.tasks.get(id) != nil }

// Task returns the open task id, and whether it is open. Between
// batches (after Advance) a stateful task holds only committed state.
func (c *Core) Task(id topology.TaskID) (topology.Task, bool) {
	t := c.tasks.open[id]
	return t, t != nil
}

// Tasks returns the open tasks, in no particular order. The core must not
// change while they are iterated.
func (c *Core) Tasks() iter.Seq2[topology.TaskID, topology.Task] {
	return maps.All(c.tasks.open)
}

// Stats returns the counters of the open tasks added up.
func (c *Core) Stats() topology.TaskStats {
	var s topology.TaskStats
	for _, t := range c.tasks.open {
		s.Add(t.Stats())
	}
	return s
}

// Begin opens a batch whose outputs (output, repartition, DLQ and
// changelog records, each task's in the order it emitted them) go to
// produce. A task tracks its own changelog records: the offsets produce
// sets on them are where its checkpoint moves when the batch commits.
func (c *Core) Begin(produce func(*kgo.Record)) {
	c.mustBeIdle("Begin")
	c.lanes.begin(produce)
}

// Process runs one poll's records through their tasks. A poll with a
// partition whose task is not open is refused (ErrUnprepared) before any
// of its records runs, as is one with a topic the topology does not read
// (ErrNotSource); a record that fails its task stops the poll with a
// *TaskError, and the batch must then not commit.
func (c *Core) Process(f kgo.Fetches) error {
	if !c.lanes.open {
		panic("batch: Process without Begin")
	}
	return c.lanes.process(f)
}

// Counts are what a batch did.
type Counts struct {
	Produced int                // records handed to produce
	Tasks    topology.TaskStats // the tasks' counters
}

// Finish returns once every output of the batch has been handed to
// produce: the loop's flush after it covers them all. It first has every
// task that holds records back (topology.Flusher) hand them over. An
// error names the tasks whose Flush failed: the batch must not commit.
func (c *Core) Finish() (Counts, error) {
	if !c.lanes.open {
		panic("batch: Finish without Begin")
	}
	err := c.lanes.flush(c.tasks.list)
	produced, stats := c.lanes.finish()
	return Counts{Produced: produced, Tasks: stats}, err
}

// Advance tells the core how the last batch ended and which partitions
// were revoked or lost since the previous Advance, and takes the step
// that follows (StepAfter): the stateful tasks commit or discard their
// pending state, or every task closes; then the revoked partitions'
// tasks close. It returns the step, for the loop to re-create its
// session where it says so, and an error naming every task that was
// closed because it failed to commit, discard or close (each restores
// from its changelog before its partition's next batch).
func (c *Core) Advance(o Outcome, revoked map[string][]int32) (Step, error) {
	c.mustBeIdle("Advance")
	s := StepAfter(o)
	var err error
	switch s.Tasks {
	case CommitTasks:
		err = c.tasks.commit() // after the Kafka commit (invariant 4)
	case DiscardTasks:
		err = c.tasks.discard()
	case DropTasks:
		err = c.tasks.drop()
	}
	if s.CloseRevoked {
		if cerr := c.tasks.close(revoked); cerr != nil {
			err = errors.Join(err, fmt.Errorf("batch: closing revoked tasks: %w", cerr))
		}
	}
	return s, err
}

// CloseRevoked closes, between batches, the tasks of partitions revoked
// or lost since the last Advance, so that none outlives its partition
// while the worker is idle: a partition that comes back must find its
// task closed, and restore it from the changelog another worker wrote.
func (c *Core) CloseRevoked(revoked map[string][]int32) error {
	c.mustBeIdle("CloseRevoked")
	if err := c.tasks.close(revoked); err != nil {
		return fmt.Errorf("batch: closing revoked tasks: %w", err)
	}
	return nil
}

// Close closes every task. The core can be used again afterwards.
func (c *Core) Close() error {
	if c.lanes.open {
		c.lanes.finish()
	}
	return c.tasks.drop()
}

func (c *Core) mustBeIdle(op string) {
	if c.lanes.open {
		panic("batch: " + op + " while a batch is open")
	}
}
