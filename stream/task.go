package stream

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// task is one instantiated sub-topology for one partition: the
// deterministic per-record step that the runtime and streamtest both drive.
type task struct {
	topo    *Topology
	id      topology.TaskID
	cfg     topology.TaskConfig
	clock   func() time.Time
	sources map[string]rawSink

	// Per-record state.
	out        []*kgo.Record
	recErr     error // first downstream error of the current record
	streamTime time.Time
	recordTime time.Time // the timestamp of the record being processed

	outputs outputs // the memory of output records, see outputs.go

	lastTopic  string
	lastSource rawSink
	lastInput  *int64 // input[lastTopic]
	lastStamp  func(*kgo.Record) (time.Time, error)

	// timestamps are the sources' event-time extractors, by topic
	// (WithTimestamp); nil: every source uses the Kafka timestamp.
	timestamps map[string]func(*kgo.Record) (time.Time, error)

	instances map[*node]any // build-time only

	// fatal is a programming error found while processing (a store used
	// without being declared): the task fails, whatever the ErrorPolicy.
	fatal   error
	closers []Closer

	// State, for tasks of sub-topologies with stores.
	db         *state.DB
	stores     map[*storeSpec]any
	changelogs map[string][]byte                        // changelog topic -> store key prefix
	restorers  map[string]func(key, value []byte) error // changelog topic -> its store's Restore, when it has one
	packed     map[string]func(key, value []byte) error // changelog topic -> its store's RestorePacked, when it has one
	writers    []*changelogWriter                       // of the stores with a changelog of their own
	packers    []packer                                 // the stores that hold changelog writes until Flush
	restored   int64
	restoredTo map[string]int64
	// sourceOffsets: for FromTable topics, the offset after the last
	// record applied since the last commit (their checkpoint).
	sourceOffsets map[string]int64
	// input: for each source topic, the offset after the last record the
	// stream time covers (-1: unknown), kept with the checkpoint.
	input map[string]*int64

	punct punctuations // see punctuate.go

	stats  topology.TaskStats
	closed bool
}

var (
	_ topology.Task     = (*task)(nil)
	_ topology.Recycler = (*task)(nil)
)

// process runs one record through the task's operators (Process, less
// the punctuation).
func (t *task) process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if t.closed {
		return out, errTaskClosed
	}
	if t.fatal != nil {
		return out, &RecordError{Origin: originOf(rec), Err: t.fatal}
	}
	src := t.lastSource
	if rec.Topic != t.lastTopic || src == nil {
		src = t.sources[rec.Topic]
		if src == nil {
			return out, &RecordError{Origin: originOf(rec), Err: errors.New("topic is not a source of this task")}
		}
		t.lastTopic, t.lastSource, t.lastInput, t.lastStamp = rec.Topic, src, t.input[rec.Topic], t.timestamps[rec.Topic]
	}
	ts, err := t.eventTime(rec, t.lastStamp)
	t.see(ts, err == nil, rec, t.lastInput)
	t.recordTime = ts
	mark := len(out)
	t.out, t.recErr = out, nil
	t.punct.mark()
	if t.db != nil {
		t.db.Mark()
	}
	if err == nil {
		err = t.push(src, rec)
	}
	out, t.out = t.out, nil
	t.stats.Processed++
	if err == nil && t.fatal == nil {
		return out, nil
	}
	out = out[:mark] // all or nothing per input record
	t.punct.rollback()
	if t.db != nil {
		t.db.Rollback()
	}
	if t.fatal != nil {
		return out, &RecordError{Origin: originOf(rec), Err: t.fatal}
	}
	switch t.topo.policy {
	case OnErrorSkip:
		t.stats.Skipped++
		return out, nil
	case OnErrorDLQ:
		t.stats.DeadLetter++
		dl := deadLetter(t.topo.dlqTopic(), rec, err)
		if t.cfg.MaxMessageBytes != nil {
			if limit := t.cfg.MaxMessageBytes(dl.Topic); limit > 0 && recordSize(dl.Key, dl.Value, dl.Headers) > limit {
				// Keep the headers that say where the record is; its value
				// does not fit the DLQ.
				dl.Value = nil
				dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("value dropped: larger than the DLQ's max.message.bytes")})
			}
		}
		return append(out, dl), nil
	}
	return out, &RecordError{Origin: originOf(rec), Err: err}
}

// eventTime returns rec's event time: what stamp (its source's
// WithTimestamp) finds, or its Kafka timestamp.
func (t *task) eventTime(rec *kgo.Record, stamp func(*kgo.Record) (time.Time, error)) (time.Time, error) {
	if stamp == nil {
		return rec.Timestamp, nil
	}
	ts, err := stamp(rec)
	if err != nil {
		return rec.Timestamp, fmt.Errorf("timestamp: %w", err)
	}
	return ts, nil
}

// see advances the stream time to ts (when known: a record whose event
// time could not be found leaves it) and, for a stateful task, its input
// position pos (rec.Topic's in t.input) past rec.
func (t *task) see(ts time.Time, known bool, rec *kgo.Record, pos *int64) {
	if known {
		t.advance(ts)
	}
	if pos != nil {
		*pos = rec.Offset + 1
	}
}

// undeclaredStore fails the task: node n resolved store s without
// declaring it. It panics to stop the processor's call; the task returns
// the error even if the processor recovers the panic.
func (t *task) undeclaredStore(n *node, s *storeSpec) {
	err := &UndeclaredStoreError{Node: n.name, Processor: n.processor, Store: s.name}
	if t.fatal == nil {
		t.fatal = err
	}
	panic(err)
}

// advance moves the stream time to ts if ts is later.
func (t *task) advance(ts time.Time) {
	if ts.After(t.streamTime) {
		t.streamTime = ts
	}
}

// push runs one record, turning a panic into an error; but for a damaged
// state database (a *state.CorruptionPanic), which is no fault of the
// record's: it panics on, and the next open of the task restores.
func (t *task) push(src rawSink, rec *kgo.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if cp, ok := p.(*state.CorruptionPanic); ok {
				panic(cp)
			}
			err = &PanicError{Value: p}
		}
	}()
	return src.pushRaw(rec)
}

func originOf(rec *kgo.Record) Origin {
	return Origin{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
}

var errTaskClosed = errors.New("stream: task is closed")

// Stats implements topology.Task.
func (t *task) Stats() topology.TaskStats { return t.stats }

// Close implements topology.Task: it closes the task's processors, in reverse
// creation order, and returns their errors joined.
func (t *task) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for i := len(t.closers) - 1; i >= 0; i-- {
		errs = append(errs, t.closers[i].Close())
	}
	if t.db != nil {
		errs = append(errs, t.db.Close()) // discards pending writes
	}
	return errors.Join(errs...)
}
