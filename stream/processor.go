package stream

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
)

// Processor is the low-level operator API: user code that sees one record
// at a time and emits any number of records, of any types.
//
// The runtime creates one Processor per task (see Stream.Process) and calls
// it from one goroutine at a time. Processors of different tasks may run
// concurrently (a worker creates the tasks of one poll in parallel), so
// anything they share must be safe for concurrent use. Process must be
// deterministic given its input and the task's state: after a crash the
// same records are processed again, and exactly-once requires the same
// outputs. Use ctx.StreamTime for time-dependent decisions, not the wall
// clock.
//
// Errors are returned, never panicked. A returned error goes through the
// topology's ErrorPolicy; a panic is recovered and treated the same way.
// When Process returns an error, every record emitted for the failing
// input record (by any operator) is discarded.
//
// A Processor may also implement Init (called once per task before the
// first record) and Close (called when the task closes), and schedule
// punctuators with Schedule.
type Processor[KIn, VIn, KOut, VOut any] interface {
	Process(ctx ProcessorContext, rec Record[KIn, VIn], out Emitter[KOut, VOut]) error
}

// Initer is implemented by processors that prepare per-task resources. An
// Init error fails the task's creation.
type Initer interface {
	Init(ctx ProcessorContext) error
}

// Closer is implemented by processors that release per-task resources.
type Closer interface {
	Close() error
}

// Emitter forwards records to the next operators. It is valid only during
// the call it was passed to (Process, or a punctuator's; see Schedule). Emit returns the first error of the
// downstream operators; Process should return it.
type Emitter[K, V any] interface {
	Emit(rec Record[K, V]) error
}

// ProcessorFunc adapts a function to a Processor with no Init or Close.
type ProcessorFunc[KIn, VIn, KOut, VOut any] func(ctx ProcessorContext, rec Record[KIn, VIn], out Emitter[KOut, VOut]) error

// Process calls f.
func (f ProcessorFunc[KIn, VIn, KOut, VOut]) Process(ctx ProcessorContext, rec Record[KIn, VIn], out Emitter[KOut, VOut]) error {
	return f(ctx, rec, out)
}

// ProcessorContext is what a processor knows about where it runs. It is a
// small value that stays valid as long as its task: a punctuator may keep
// the one Init was passed.
type ProcessorContext struct {
	t    *task
	node *node
	out  any // the processor's Emitter, for Schedule
}

// AppID returns the application id.
func (c ProcessorContext) AppID() string { return c.t.topo.appID }

// Node returns the name of the processor's node.
func (c ProcessorContext) Node() string { return c.node.name }

// Partition returns the task's partition number.
func (c ProcessorContext) Partition() int32 { return c.t.id.Partition }

// Subtopology returns the task's sub-topology id.
func (c ProcessorContext) Subtopology() int { return c.t.id.Subtopology }

// StreamTime returns the task's stream time: the largest record timestamp
// it has seen, including the current record. It is the zero time before
// the first record. Use it, not Now, for anything that decides output.
func (c ProcessorContext) StreamTime() time.Time { return c.t.streamTime }

// Now returns the wall-clock time from the runtime's (or the test driver's)
// injected clock. It must not decide output: a replay would differ.
func (c ProcessorContext) Now() time.Time { return c.t.clock() }

// Process adds a user processor. newProcessor is called once per task;
// the output types are those of the processor:
//
//	enriched := orders.Process(func() *enricher { return &enricher{} })
//
// Build calls newProcessor once more, and the processor's Init, on a probe
// task of the node's sub-topology that has only the declared stores (in
// memory, empty), sees no records, has partition 0 and the zero stream
// time and clock; then Close. If Init resolves a store the node did not
// declare with WithStores, Build fails naming the processor and the store.
// newProcessor and Init must therefore have no effects outside the task
// (other failures of the probe are ignored: the real tasks report them).
// A store resolved in Process without being declared fails the task with
// an *UndeclaredStoreError, whatever the ErrorPolicy: every record would
// fail the same way.
func (s Stream[K, V]) Process[K2, V2 any, P Processor[K, V, K2, V2]](newProcessor func() P, opts ...ProcessOption) Stream[K2, V2] {
	var n *node
	out := then(s, "process", nodeOptions(opts), func(t *task, next sink[K2, V2]) (sink[K, V], error) {
		p := newProcessor()
		em := &emitter[K2, V2]{t: t, next: next}
		ctx := ProcessorContext{t: t, node: n, out: em}
		if err := initProcessor(p, ctx); err != nil {
			return nil, &NodeError{Node: n.name, Err: err}
		}
		if c, ok := any(p).(Closer); ok {
			t.closers = append(t.closers, c)
		}
		return sinkFunc[K, V](func(r Record[K, V]) error {
			if err := p.Process(ctx, r, em); err != nil {
				if t.recErr != nil {
					return t.recErr // the processor passed on a downstream error
				}
				return &NodeError{Node: n.name, Err: err}
			}
			return t.recErr // a downstream error the processor swallowed
		}), nil
	})
	n = out.out.node
	n.processor = fmt.Sprintf("%T", *new(P))
	if newProcessor == nil {
		s.b.errorf("%s: processor constructor is nil", n.name)
		return out
	}
	n.probe = func(t *task) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = &PanicError{Value: p}
			}
			if t.fatal != nil {
				err = t.fatal
			}
		}()
		p := newProcessor()
		if c, ok := any(p).(Closer); ok {
			defer c.Close()
		}
		return initProcessor(p, ProcessorContext{t: t, node: n})
	}
	return out
}

// initProcessor calls p's Init, if it has one. A store Init resolves
// without declaring it is returned as an *UndeclaredStoreError; other
// panics are not recovered.
func initProcessor(p any, ctx ProcessorContext) (err error) {
	i, ok := p.(Initer)
	if !ok {
		return nil
	}
	defer func() {
		if ctx.t.fatal != nil {
			recover()
			err = ctx.t.fatal
		}
	}()
	return i.Init(ctx)
}

type emitter[K, V any] struct {
	t    *task
	next sink[K, V]
}

func (e *emitter[K, V]) Emit(r Record[K, V]) error {
	if err := e.next.push(r); err != nil {
		if e.t.recErr == nil {
			e.t.recErr = err
		}
		return err
	}
	return nil
}

// Metrics makes a processor's own metrics: see ProcessorContext.Metrics.
type Metrics = topology.Metrics

// Counter, Gauge and Histogram are the metrics Metrics makes; the
// Prometheus types of the same names implement them, and are what the
// runtime returns.
type (
	Counter   = topology.Counter
	Gauge     = topology.Gauge
	Histogram = topology.Histogram
)

// Metrics returns the worker's maker of user-defined metrics, for a
// processor to count or observe something of its own, as Kafka Streams'
// context.metrics() does. Make each metric once, in Init, and use it in
// Process:
//
//	func (e *enricher) Init(ctx stream.ProcessorContext) (err error) {
//		e.misses, err = ctx.Metrics().Counter("enrich_customer_misses_total",
//			"Orders whose customer was not in the table.")
//		return err
//	}
//
// The worker registers them where it registers its own (txn.Config's
// Registerer: the runner serves them at /metrics), with its app and
// instance labels. Every task of the worker that asks for a name gets the
// same metric, safe for concurrent use. A metric counts what processors
// did in transactions that aborted too, as sluice_records_processed_total
// does; it must never decide output. Where no runtime provides metrics
// (the probe task of Build, a test driving a task), they work and nobody
// reads them.
func (c ProcessorContext) Metrics() Metrics {
	if m := c.t.cfg.Metrics; m != nil {
		return m
	}
	return discardMetrics{}
}

// discardMetrics makes metrics that nobody reads.
type discardMetrics struct{}

type discardMetric struct{}

func (discardMetric) Inc()            {}
func (discardMetric) Add(float64)     {}
func (discardMetric) Set(float64)     {}
func (discardMetric) Observe(float64) {}

func (discardMetrics) Counter(string, string) (Counter, error) { return discardMetric{}, nil }
func (discardMetrics) Gauge(string, string) (Gauge, error)     { return discardMetric{}, nil }
func (discardMetrics) Histogram(string, string, []float64) (Histogram, error) {
	return discardMetric{}, nil
}
