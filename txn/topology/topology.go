// Package topology is the contract between a topology and the runtime that
// drives it: what package stream builds (Topology, its tasks, the global
// tables' state) and what package txn runs, each task in turn, inside its
// transactions. It imports no runtime, so that a topology and its unit
// tests compile without one.
package topology

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TaskID names one task: one partition number of one sub-topology. All
// source topics of a sub-topology are co-partitioned, so partition p of each
// of them is routed to the same task.
type TaskID struct {
	Subtopology int
	Partition   int32
}

// Subtopology is a connected part of a topology: the records of its source
// topics flow only through its own operators.
type Subtopology struct {
	ID           int
	SourceTopics []string
}

// InternalTopic is a topic the runtime creates and owns (DLQ, repartition,
// changelog).
type InternalTopic struct {
	Name    string
	Purpose string // "dlq", "repartition", "changelog"
	// Subtopology is the sub-topology whose source partition count the
	// topic must have (a changelog has one partition per task); -1 means
	// the largest partition count among all source topics.
	Subtopology int
	Configs     map[string]string
}

// Topology is what the runtime drives. stream.Builder.Build returns one.
//
// Implementations must be safe for concurrent use by several tasks; each
// Task they return is used by one goroutine at a time.
type Topology interface {
	// AppID prefixes the transactional id, the group and internal topics.
	AppID() string
	// Subtopologies lists the sub-topologies in a stable order.
	Subtopologies() []Subtopology
	// SinkTopics lists the external topics the topology writes; they must
	// exist before the worker starts.
	SinkTopics() []string
	// InternalTopics lists the topics the runtime must create or validate.
	InternalTopics() []InternalTopic
	// NewTask instantiates the operators of one task. The runtime calls
	// it for several tasks at once (a worker creates the tasks of one
	// poll in parallel), never twice at once for the same task.
	NewTask(id TaskID, cfg TaskConfig) (Task, error)
	// NewGlobal returns the worker-wide state of the topology's global
	// tables, kept in stateDir ("" keeps it in memory), or nil when the
	// topology has none. Each worker makes one and hands it to its tasks
	// in TaskConfig.Global.
	NewGlobal(stateDir string) (Global, error)
}

// Global is the state of a topology's global tables: every worker holds
// all partitions of their topics. The runtime feeds it from one goroutine
// (Apply, Flush) while tasks read it concurrently.
type Global interface {
	// Topics lists the global tables' topics.
	Topics() []string
	// From returns, per topic and partition, the offset to resume reading
	// from (the checkpoint); partitions not listed start at the beginning.
	From() map[string]map[int32]int64
	// Apply applies one record (read with read_committed); it becomes
	// visible to tasks at the next Flush.
	Apply(rec *kgo.Record) error
	// Flush makes applied records visible and durable with the offsets
	// they reach.
	Flush() error
	// Close closes the state.
	Close() error
}

// TaskConfig is what the runtime hands a task at creation.
type TaskConfig struct {
	// Clock is the wall clock processors see through their context. It
	// never decides output (see DESIGN.md invariant 7). Nil means time.Now.
	Clock func() time.Time
	// MaxMessageBytes returns the largest record the broker accepts on
	// topic (its max.message.bytes), or 0 for no limit. The task routes a
	// record whose output would exceed it through the error policy instead
	// of sending it: a rejected send would abort the whole transaction.
	// Nil means no limit.
	MaxMessageBytes func(topic string) int
	// StateDir is the directory of the task's local state; "" keeps state
	// in memory (tests).
	StateDir string
	// StateFlushWrites is Config.StateFlushWrites: how many committed
	// writes the task's database holds in memory at most before flushing
	// them. Zero means the default (state.DefaultFlushWrites).
	StateFlushWrites int
	// Global is the worker's global table state (nil without global
	// tables).
	Global Global
	// Metrics makes the metrics processors keep of their own; nil: the
	// task keeps none (its processors still get working ones).
	Metrics Metrics
}

// Metrics makes a worker's user-defined metrics, registered where the
// runtime's own are, with the same constant labels (the runtime's: app
// and instance). Asking again for a name returns the metric made first,
// shared by every task of the worker; a name used for another kind of
// metric, or with another help text or buckets, is an error, as is a name
// the metrics system does not accept. Implementations are safe for
// concurrent use, and so are the metrics they return.
type Metrics interface {
	// Counter returns the counter name.
	Counter(name, help string) (Counter, error)
	// Gauge returns the gauge name.
	Gauge(name, help string) (Gauge, error)
	// Histogram returns the histogram name with the given bucket upper
	// bounds (nil: the metrics system's default ones).
	Histogram(name, help string, buckets []float64) (Histogram, error)
}

// Counter is a value that only goes up (Prometheus' prometheus.Counter
// implements it).
type Counter interface {
	Inc()
	// Add adds v, which must not be negative.
	Add(v float64)
}

// Gauge is a value that goes up and down (prometheus.Gauge implements
// it).
type Gauge interface {
	Set(v float64)
	Add(v float64)
}

// Histogram counts observations in buckets (prometheus.Histogram
// implements it).
type Histogram interface {
	Observe(v float64)
}

// StoreSizer is a StatefulTask that tells how large its stores are. The
// runtime asks now and then, between batches, never while the task
// processes.
type StoreSizer interface {
	// StoreSizes returns, for each store of the task, how many keys it
	// holds and an estimate of its bytes on disk.
	StoreSizes() ([]StoreSize, error)
}

// StoreSize is the size of one store of a task.
type StoreSize struct {
	Store     string
	Keys      int64
	DiskBytes uint64
}

// Task is the deterministic per-record step of one task: no I/O, no
// goroutines. It is not safe for concurrent use.
type Task interface {
	// Process runs one input record through the task's operators and
	// appends the records to produce (outputs, repartition and DLQ records)
	// to out. It returns an error only when the topology's error policy is
	// to fail, or on an internal fault; the task must then be closed.
	//
	// rec and its byte slices must not be modified or reused after the
	// call: outputs may alias them.
	Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error)
	// Stats returns counters accumulated since the task was created.
	Stats() TaskStats
	// Close releases the task's operators. It is safe to call once.
	Close() error
}

// Flusher is a Task that holds records back across Process calls: a
// store that packs several changelog writes into one record
// (state.Segmented). The runtime calls Flush after the records of each
// poll it hands the task, and once more after the batch's last Process
// and Punctuate, before the transaction ends, on the goroutine that
// processes the task; the records it appends are produced in the batch's
// transaction like Process's. An error means the task's state failed:
// the batch must not commit, and the task is closed.
type Flusher interface {
	Task
	Flush(out []*kgo.Record) ([]*kgo.Record, error)
}

// Recycler is a Task that reuses the records it returns from Process.
type Recycler interface {
	// Recycle tells the task that the runtime holds none of the records
	// Process returned before the call: each was produced and
	// acknowledged or failed, so their memory can be used for new
	// outputs. The runtime calls it after every transaction that
	// committed or was aborted with every output flushed; after any other
	// outcome it closes the task instead.
	Recycle()
}

// StatefulTask is a Task with local state changelogged to Kafka. The
// runtime restores it before its first record, never while a transaction
// is open, and after every transaction commits or discards its pending
// writes (DESIGN.md invariants 4 to 6).
type StatefulTask interface {
	Task
	// RestoreFrom returns, for each changelog topic of the task, the offset
	// of the task's partition to replay from; -2 means from the start.
	RestoreFrom() map[string]int64
	// Restore applies one changelog record, read with read_committed.
	Restore(rec *kgo.Record) error
	// InputFrom returns, for each source topic, the offset of the task's
	// partition after the last input record its restored state covers,
	// where it knows one. The input from there to the group's committed
	// offset was processed by transactions that committed later: the
	// restore shows it to SeeInput (with read_committed), so that what
	// the task derives from its input besides its stores, its stream
	// time, is what it was at the committed offset.
	InputFrom() map[string]int64
	// SeeInput shows the task one record of that input. It does not
	// process it.
	SeeInput(rec *kgo.Record)
	// RestoreDone makes the restored records durable; next holds the
	// offset each changelog was read up to.
	RestoreDone(next map[string]int64) error
	// Discard forgets what the task did since its last Commit (or since
	// its restore): its pending writes, and what it derived from its
	// input besides its stores (the stream time, the input positions).
	// The transaction that carried them did not commit, and the task goes
	// on from its committed state, as its partition does from its
	// committed offset. The task stays open, unless Discard returns an
	// error: its database then misses committed writes (an earlier apply
	// failed), and the task must be closed and restored.
	Discard() error
	// Commit applies the pending writes, after the transaction that carried
	// their changelog records committed, every record acknowledged. The
	// task knows its changelog records among its outputs: the offset the
	// producer set on the last one of each changelog (kgo.Record.Offset)
	// moves that changelog's checkpoint.
	//
	// Commit may return before the writes are durable: the task then
	// applies them in the background while it processes the next
	// transaction, one apply after the other, each with its checkpoint;
	// Close waits for the last one. An error (also that of an earlier
	// apply) means the task's database misses committed writes: the task
	// must be closed, and is restored from its last applied checkpoint.
	Commit() error
}

// TaskStats counts what a task did with its input.
type TaskStats struct {
	Processed  int64 // records that went through the topology
	DeadLetter int64 // records routed to the DLQ
	Skipped    int64 // records dropped by the skip policy
	// Duplicates counts the records a dedup operator dropped as seen
	// before; Unchecked those it passed on unchecked, too old for its
	// span to tell.
	Duplicates, Unchecked int64
	// Late counts records dropped because every window they belong to
	// had closed.
	Late int64
}

// Add adds o's counts to s.
func (s *TaskStats) Add(o TaskStats) {
	s.Processed += o.Processed
	s.DeadLetter += o.DeadLetter
	s.Skipped += o.Skipped
	s.Duplicates += o.Duplicates
	s.Unchecked += o.Unchecked
	s.Late += o.Late
}

// Sub subtracts o's counts from s.
func (s *TaskStats) Sub(o TaskStats) {
	s.Processed -= o.Processed
	s.DeadLetter -= o.DeadLetter
	s.Skipped -= o.Skipped
	s.Duplicates -= o.Duplicates
	s.Unchecked -= o.Unchecked
	s.Late -= o.Late
}
