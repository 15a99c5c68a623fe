package stream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PunctuationType says which clock drives a punctuator.
type PunctuationType int

const (
	// StreamTime punctuators are driven by the task's stream time: they
	// fire after the record that moves it into a new interval (see
	// Schedule). They are deterministic: replayed input punctuates again
	// exactly as it did.
	StreamTime PunctuationType = iota
	// WallClock punctuators are driven by the runtime's injected clock
	// (txn.Config.Clock; the test driver's AdvanceWallClock): they fire at
	// least once per interval while the task is open, also when no record
	// arrives. They are not replay-deterministic.
	WallClock
)

func (p PunctuationType) String() string {
	switch p {
	case StreamTime:
		return "stream-time"
	case WallClock:
		return "wall-clock"
	}
	return "PunctuationType(" + strconv.Itoa(int(p)) + ")"
}

// Punctuation is a scheduled punctuator (see Schedule).
type Punctuation struct {
	ps    *punctuations
	node  *node
	typ   PunctuationType
	every time.Duration
	run   func(now time.Time) error
	// due is when a wall-clock punctuator fires next.
	due time.Time
	// cancelled is set by Cancel; committed and cancelledCommitted are
	// what the last batch that committed left (see punctuations.settle).
	cancelled, committed, cancelledCommitted bool
}

// Cancel stops the punctuator: it fires no more. It may be called from the
// punctuator itself, and more than once. Like a Schedule, a Cancel is
// undone with the effects of a record (or punctuator) that fails, and with
// a batch that does not commit: those are processed again.
func (p *Punctuation) Cancel() {
	if !p.cancelled {
		p.cancelled = true
		p.ps.undo = append(p.ps.undo, p)
	}
}

// Schedule makes punctuate run every interval, as driven by typ, in the
// task of ctx, until the task closes or the returned Punctuation is
// cancelled. Call it from a Processor's Init (or from Process); ctx must
// be the context passed to it. K and V are the processor's output types:
// punctuate emits with out, as Process does, and may use the processor's
// stores. Its now is the stream time (StreamTime) or the injected wall
// clock's time (WallClock).
//
//	func (p *expirer) Init(ctx stream.ProcessorContext) error {
//		_, err := stream.Schedule(ctx, time.Minute, stream.StreamTime,
//			func(now time.Time, out stream.Emitter[string, int64]) error {
//				return p.expire(ctx, now, out)
//			})
//		return err
//	}
//
// # When they fire
//
// A StreamTime punctuator fires after the first record that gives the task
// a stream time, and then after every record that moves the stream time
// into a later interval of the epoch-aligned grid of every (as tumbling
// windows are aligned): once, however many intervals the stream time
// jumped. Its outputs and state writes are in that record's transaction.
// Unlike Kafka Streams, whose grid starts at the first stream time each
// run sees, the grid depends on nothing but the stream time, which a
// stateful task keeps with its checkpoint: after a crash, the replayed
// input punctuates exactly as before (DESIGN.md invariant 7). A task
// without stores keeps no stream time across restarts; its first record
// after a restart fires its StreamTime punctuators again.
//
// A WallClock punctuator fires first every after Schedule, then once per
// every, of the injected clock; when the runtime was late by more than an
// interval, it fires once and the next is due every after that. Its
// outputs and state writes go into the transaction that is open when it
// fires (the runtime opens one for it when no record arrives). Whether
// and when it fires depends on when the worker ran: a replay does not
// repeat it, so it must not decide output that must replay identically.
//
// # Errors
//
// An error from punctuate (or from a downstream operator of what it
// emits) goes through the topology's ErrorPolicy, as a record's: what the
// punctuator emitted and wrote is discarded, then, under OnErrorDLQ, a
// record with a null key and value and the headers sluice.error,
// sluice.node, sluice.punctuation (the PunctuationType) and
// sluice.partition goes to the DLQ; under OnErrorSkip it is counted as
// skipped; under OnErrorFail the task fails with a *PunctuationError.
//
// A Schedule made by a record (or punctuator) that fails, or in a batch
// that does not commit, is undone with the rest of its effects: the
// record is processed again, or not at all.
//
// Schedule fails when every is under a millisecond (the stream time's
// unit; every is truncated to whole milliseconds), when typ is unknown,
// or when K and V are not the processor's output types.
func Schedule[K, V any](ctx ProcessorContext, every time.Duration, typ PunctuationType, punctuate func(now time.Time, out Emitter[K, V]) error) (*Punctuation, error) {
	if ctx.t == nil || ctx.node == nil {
		return nil, errors.New("stream: Schedule: the context is not a processor's")
	}
	em, ok := ctx.out.(Emitter[K, V])
	switch {
	case !ok:
		var k K
		var v V
		return nil, fmt.Errorf("stream: node %s: Schedule: the punctuator emits Record[%T, %T], not the processor's output type", ctx.node.name, k, v)
	case punctuate == nil:
		return nil, fmt.Errorf("stream: node %s: Schedule: punctuator is nil", ctx.node.name)
	case every < time.Millisecond:
		return nil, fmt.Errorf("stream: node %s: Schedule: interval %v is under the stream time's unit, a millisecond", ctx.node.name, every)
	case typ != StreamTime && typ != WallClock:
		return nil, fmt.Errorf("stream: node %s: Schedule: unknown %v", ctx.node.name, typ)
	}
	p := &Punctuation{ps: &ctx.t.punct, node: ctx.node, typ: typ, every: every.Truncate(time.Millisecond),
		run: func(now time.Time) error { return punctuate(now, em) }}
	if typ == WallClock {
		p.due = ctx.t.clock().Add(p.every)
	}
	ctx.t.punct.list = append(ctx.t.punct.list, p)
	return p, nil
}

// punctuations are a task's punctuators, in the order they were scheduled
// (the order they fire in when due together). What a batch does to the
// list (Schedule, Cancel) is undone when the batch does not commit, as
// its records are processed again.
type punctuations struct {
	list []*Punctuation
	// streamTime is, for a task without stores, the stream time when the
	// last batch committed (a stateful task's is in its checkpoint).
	streamTime time.Time
	// marked is len(list) at the last mark, and undo the punctuators
	// cancelled since: what rollback undoes.
	marked int
	undo   []*Punctuation
}

// mark starts a record or a punctuator's run: rollback undoes what it
// schedules and cancels, as its outputs and state writes are.
func (ps *punctuations) mark() {
	ps.marked = len(ps.list)
	clear(ps.undo)
	ps.undo = ps.undo[:0]
}

// rollback undoes the Schedules and Cancels made since mark.
func (ps *punctuations) rollback() {
	clear(ps.list[ps.marked:])
	ps.list = ps.list[:ps.marked]
	for _, p := range ps.undo {
		p.cancelled = false
	}
	ps.mark()
}

// settle keeps what the batch did to the list, or undoes it.
func (ps *punctuations) settle(committed bool) {
	ps.list = slices.DeleteFunc(ps.list, func(p *Punctuation) bool {
		if committed {
			return p.cancelled
		}
		return !p.committed
	})
	for _, p := range ps.list {
		if committed {
			p.committed, p.cancelledCommitted = true, p.cancelled
		} else {
			p.cancelled = p.cancelledCommitted
		}
	}
}

var _ topology.Punctuator = (*task)(nil)

// Process implements topology.Task: it processes rec, then fires the
// stream-time punctuators it made due.
func (t *task) Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	prev := t.streamTime
	out, err := t.process(rec, out)
	if err != nil || len(t.punct.list) == 0 || t.streamTime.Equal(prev) {
		return out, err
	}
	return t.punctuate(StreamTime, prev, t.streamTime, out)
}

// streamDue reports whether a stream-time punctuator fires when the
// stream time moves from prev to now.
func (p *Punctuation) streamDue(prev, now time.Time) bool {
	if now.IsZero() {
		return false
	}
	if prev.IsZero() {
		return true
	}
	every := p.every.Milliseconds()
	return floorDiv(now.UnixMilli(), every) > floorDiv(prev.UnixMilli(), every)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// NextWallClock implements topology.Punctuator.
func (t *task) NextWallClock() (due time.Time, ok bool) {
	for _, p := range t.punct.list {
		if p.typ == WallClock && !p.cancelled && (!ok || p.due.Before(due)) {
			due, ok = p.due, true
		}
	}
	return due, ok
}

// Punctuate implements topology.Punctuator.
func (t *task) Punctuate(now time.Time, out []*kgo.Record) ([]*kgo.Record, error) {
	if t.closed {
		return out, errTaskClosed
	}
	return t.punctuate(WallClock, time.Time{}, now, out)
}

// Settle implements topology.Punctuator. A stateful task's stream time
// goes back with its Discard.
func (t *task) Settle(committed bool) {
	t.punct.settle(committed)
	if t.db == nil {
		if committed {
			t.punct.streamTime = t.streamTime
		} else {
			t.streamTime = t.punct.streamTime
		}
	}
}

// punctuate fires the punctuators of type typ that are due: stream-time
// ones when the stream time moved from prev to now, wall-clock ones at
// now. A punctuator scheduled meanwhile waits for the next call.
func (t *task) punctuate(typ PunctuationType, prev, now time.Time, out []*kgo.Record) ([]*kgo.Record, error) {
	n := len(t.punct.list)
	for i := 0; i < n; i++ {
		p := t.punct.list[i]
		if p.cancelled || p.typ != typ {
			continue
		}
		switch typ {
		case StreamTime:
			if !p.streamDue(prev, now) {
				continue
			}
		case WallClock:
			if now.Before(p.due) {
				continue
			}
			// As Kafka Streams: once however late, then every after.
			if next := p.due.Add(p.every); next.After(now) {
				p.due = next
			} else {
				p.due = now.Add(p.every)
			}
		}
		var err error
		if out, err = t.fire(p, now, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// fire runs one punctuator, all or nothing, and routes its error through
// the error policy.
func (t *task) fire(p *Punctuation, now time.Time, out []*kgo.Record) ([]*kgo.Record, error) {
	mark := len(out)
	// A changelog record carries the stream time, never the wall clock: a
	// restore advances the stream time to it.
	t.recordTime = t.streamTime
	t.out, t.recErr = out, nil
	t.punct.mark()
	if t.db != nil {
		t.db.Mark()
	}
	err := t.call(p, now)
	out, t.out = t.out, nil
	if err == nil {
		return out, nil
	}
	out = out[:mark]
	t.punct.rollback()
	if t.db != nil {
		t.db.Rollback()
	}
	switch t.topo.policy {
	case OnErrorSkip:
		t.stats.Skipped++
		return out, nil
	case OnErrorDLQ:
		t.stats.DeadLetter++
		return append(out, &kgo.Record{
			Topic:     t.topo.dlqTopic(),
			Timestamp: now,
			Headers: []kgo.RecordHeader{
				{Key: HeaderError, Value: []byte(err.Error())},
				{Key: HeaderNode, Value: []byte(p.node.name)},
				{Key: HeaderPunctuation, Value: []byte(p.typ.String())},
				{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(t.id.Partition), 10)},
			},
		}), nil
	}
	return out, &PunctuationError{Node: p.node.name, Type: p.typ, Time: now, Err: err}
}

// call runs p's punctuator, turning a panic into an error, and returns
// its error or that of a downstream operator it swallowed.
func (t *task) call(p *Punctuation, now time.Time) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r}
		}
	}()
	if err := p.run(now); err != nil {
		if t.recErr != nil {
			return t.recErr
		}
		return &NodeError{Node: p.node.name, Err: err}
	}
	return t.recErr
}

// PunctuationError is the error a task returns under OnErrorFail when a
// punctuator fails: which node's punctuator, of which type, at which
// time (stream time or wall clock, after Type).
type PunctuationError struct {
	Node string
	Type PunctuationType
	Time time.Time
	Err  error
}

func (e *PunctuationError) Error() string {
	return fmt.Sprintf("stream: %s punctuation of node %s at %s: %s", e.Type, e.Node, e.Time.UTC().Format(time.RFC3339Nano),
		strings.TrimPrefix(e.Err.Error(), "stream: "))
}

// Unwrap returns the cause.
func (e *PunctuationError) Unwrap() error { return e.Err }
