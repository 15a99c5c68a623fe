package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// Windowed is a grouped stream cut into event-time windows (tumbling,
// hopping or sliding), ready to aggregate per key and window.
type Windowed[K, V any] struct {
	g    Grouped[K, V]
	spec window.Spec
}

// WindowedBy cuts the grouped stream g into the windows of spec: a
// window.Tumbling, window.Hopping or window.Sliding, each with its grace
// (sliding windows: see docs/windows.md). Session windows merge, and their
// aggregations need a merger: they go through SessionWindowedBy.
//
//	counts := stream.WindowedBy(clicks.GroupByKey(serde.String, serde.Bytes),
//		window.Tumbling{Size: time.Minute, Grace: 10 * time.Second}).
//		Count("clicks-per-minute", stream.EmitOnClose())
//
// It is a function, not a method of Grouped: the windowed stream's keys
// are window.Keyed[K], and a method would let Go instantiate Grouped with
// ever deeper keys (an instantiation cycle the compiler rejects).
func WindowedBy[K, V any](g Grouped[K, V], spec window.Spec) Windowed[K, V] {
	switch spec.(type) {
	case window.Tumbling, window.Hopping, window.Sliding:
		if err := spec.Validate(); err != nil {
			g.s.b.errorf("WindowedBy: %v", err)
		}
	case window.Session:
		g.s.b.errorf("WindowedBy: window.Session windows merge: aggregate them with stream.SessionWindowedBy")
	case nil:
		g.s.b.errorf("WindowedBy: the window spec is nil")
	default:
		g.s.b.errorf("WindowedBy: %T windows are not supported", spec)
	}
	return Windowed[K, V]{g: g, spec: spec}
}

// WindowedTable is the result of a windowed aggregation: an aggregate per
// key and window.
type WindowedTable[K, A any] struct {
	b   *Builder
	out *outlet[window.Keyed[K], A]
}

// ToStream returns the table's records: every update of a window's
// aggregate (the default), or, with EmitOnClose, one final record per
// window.
func (t WindowedTable[K, A]) ToStream() Stream[window.Keyed[K], A] {
	return Stream[window.Keyed[K], A]{b: t.b, out: t.out}
}

// EmitOnClose makes a windowed aggregation emit exactly one record per
// window, its final aggregate, once the window has closed: when stream
// time reaches the window's end plus its grace (Kafka Streams'
// emitStrategy(onWindowClose)). Without it every record emits its
// window's new aggregate. A window closes only when records advance its
// task's stream time: on a partition that receives nothing, its last
// windows stay open.
func EmitOnClose() WindowOption { return emitOnCloseOption{} }

// emitOnCloseOption is what EmitOnClose returns.
type emitOnCloseOption struct{}

func (emitOnCloseOption) applyNode(o *nodeOpts) { o.emitOnClose = true }
func (emitOnCloseOption) windowOption()         {}

// Aggregate folds the values of each key and window into an aggregate of
// type A, starting from init() and applying add for every record of the
// window. The name (required) is its store's, changelogged to
// `<app-id>-<name>-changelog`. A window's aggregate is kept until the
// window closes (its end plus the grace, in stream time) and then removed
// (a tombstone in the changelog); a sliding window's is kept twice the
// difference longer, for the out-of-order records after it (see
// docs/windows.md). A record whose every window has closed
// is late: it is dropped and counted (TaskStats.Late,
// sluice_late_records_dropped_total).
func (w Windowed[K, V]) Aggregate[A any](name string, init func() A, add func(key K, value V, agg A) A, aggSerde serde.Serde[A], opts ...WindowOption) WindowedTable[K, A] {
	if init == nil || add == nil {
		w.g.s.b.errorf("windowed Aggregate: init and add must not be nil")
	}
	return windowedAggregate(w, initThenAdd(init, add), aggSerde, "windowed-aggregate", withName(name, opts))
}

// Count counts the records of each key and window (values serde.Int64).
// The name (required) is its store's.
func (w Windowed[K, V]) Count(name string, opts ...WindowOption) WindowedTable[K, int64] {
	return windowedAggregate(w, countAdder[K, V], serde.Int64, "windowed-count", withName(name, opts))
}

// Reduce combines the values of each key and window with reduce; a
// window's first value is its own aggregate. The name (required) is its
// store's.
func (w Windowed[K, V]) Reduce(name string, reduce func(agg, value V) V, opts ...WindowOption) WindowedTable[K, V] {
	if reduce == nil {
		w.g.s.b.errorf("windowed Reduce: reduce must not be nil")
	}
	return windowedAggregate(w, reduceAdder[K](reduce), w.g.vs, "windowed-reduce", withName(name, opts))
}

// windowedAggregate is the stateful node behind the windowed Aggregate,
// Count and Reduce.
func windowedAggregate[K, V, A any](w Windowed[K, V], add func(K, V, A, bool) A, aggSerde serde.Serde[A], op string, opts []nodeOption) WindowedTable[K, A] {
	b := w.g.s.b
	o := b.stateful(op, "its store and changelog", opts)
	if aggSerde == nil {
		b.errorf("%s %s: the aggregate serde is nil", op, o.name)
	}
	if spec, ok := w.spec.(window.Sliding); ok {
		return slidingAggregate(w, spec, add, aggSerde, op, o, opts)
	}
	store := newWindowStore[K, A](b, o.name, w.g.ks, aggSerde)
	out := then(w.g.s, op, append(opts, WithStores(store)), func(t *task, next sink[window.Keyed[K], A]) (sink[K, V], error) {
		n := &windowNode[K, V, A]{t: t, spec: w.spec, add: add, onClose: o.emitOnClose, next: next,
			windows: t.stores[store.s].(*state.Expiring[window.Keyed[K], A])}
		n.emit = n.emitClosed
		// A key's first record in a window finds no aggregate: the filter
		// answers for those, by slices of a tenth of a window's life.
		n.windows.KeepFilter(max((w.spec.MaxSize()+w.spec.GracePeriod())/10, time.Second))
		return n, nil
	})
	return WindowedTable[K, A]{b: b, out: out.out}
}

type windowNode[K, V, A any] struct {
	t       *task
	spec    window.Spec
	add     func(K, V, A, bool) A
	onClose bool
	next    sink[window.Keyed[K], A]
	windows *state.Expiring[window.Keyed[K], A]
	emit    func(window.Keyed[K], A) error // emitClosed, made once
	buf     []window.Window
}

func (n *windowNode[K, V, A]) push(r Record[K, V]) error {
	t := n.t
	// Windows that stream time has closed go first: outputs stay in
	// event-time order, and no record can belong to them any more.
	if err := n.close(); err != nil {
		return err
	}
	n.buf = n.windowsOf(r.ts, n.buf[:0])
	accepted := false
	for _, w := range n.buf {
		closesAt := window.ClosesAt(n.spec, w)
		if !closesAt.After(t.streamTime) {
			continue // closed: late for this window
		}
		accepted = true
		key := window.Keyed[K]{Key: r.key, Window: w}
		agg, _, found, err := n.windows.Get(key)
		if err != nil {
			return err
		}
		agg = n.add(r.key, r.value, agg, found)
		if err := n.windows.Put(key, agg, closesAt); err != nil {
			return err
		}
		if !n.onClose {
			if err := n.next.push(Record[window.Keyed[K], A]{key: key, value: agg, ts: r.ts, headers: r.headers, origin: r.origin}); err != nil {
				return err
			}
		}
	}
	if !accepted {
		t.stats.Late++
	}
	return nil
}

// windowsOf appends the windows that contain ts to dst.
func (n *windowNode[K, V, A]) windowsOf(ts time.Time, dst []window.Window) []window.Window {
	switch s := n.spec.(type) {
	case window.Tumbling:
		return append(dst, s.For(ts))
	case window.Hopping:
		return s.AppendFor(dst, ts)
	}
	return dst
}

// close removes the windows stream time has closed, emitting each one's
// final aggregate under EmitOnClose.
func (n *windowNode[K, V, A]) close() error {
	if n.onClose {
		return n.windows.Expire(n.t.streamTime, n.emit)
	}
	return n.windows.Expire(n.t.streamTime, nil)
}

// emitClosed forwards a closed window's final aggregate, at the last
// millisecond of the window.
func (n *windowNode[K, V, A]) emitClosed(key window.Keyed[K], agg A) error {
	return n.next.push(Record[window.Keyed[K], A]{key: key, value: agg, ts: key.Window.End.Add(-time.Millisecond)})
}

// windowStore is a declared window store: aggregates by key and window
// start, each expiring when its window closes.
type windowStore[K, A any] struct{ s *storeSpec }

func (s windowStore[K, A]) spec() *storeSpec { return s.s }

func newWindowStore[K, A any](b *Builder, name string, ks serde.Serde[K], as serde.Serde[A]) windowStore[K, A] {
	s := &storeSpec{name: name, query: windowQuery[K, A](ks)}
	s.open = func(t *task) (any, error) {
		topic := s.changelogTopic(b.appID)
		return state.NewExpiring(t.db, name, topic, t.newChangelogWriter(topic), windowKeyCodec[K]{ks: ks}, state.Codec[A](as))
	}
	if !validTopic.MatchString(name) || len(name) > 200 {
		b.errorf("store name %q: use 1 to 200 of [a-zA-Z0-9._-] (it names the changelog topic)", name)
	}
	b.stores = append(b.stores, s)
	return windowStore[K, A]{s: s}
}

// windowKeyCodec encodes a key and window as the key's encoding followed by
// the window's start and end in milliseconds (8 bytes each): a key's
// windows are contiguous, in order of their start.
type windowKeyCodec[K any] struct{ ks serde.Serde[K] }

func (c windowKeyCodec[K]) Encode(k window.Keyed[K]) ([]byte, error) {
	kb, err := c.ks.Encode(k.Key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(kb)+16)
	out = append(out, kb...)
	out = binary.BigEndian.AppendUint64(out, uint64(k.Window.Start.UnixMilli())^1<<63)
	return binary.BigEndian.AppendUint64(out, uint64(k.Window.End.UnixMilli())^1<<63), nil
}

func (c windowKeyCodec[K]) Decode(b []byte) (window.Keyed[K], error) {
	var k window.Keyed[K]
	if len(b) < 16 {
		return k, errors.New("stream: window key shorter than its window")
	}
	n := len(b) - 16
	key, err := c.ks.Decode(b[:n])
	if err != nil {
		return k, fmt.Errorf("stream: window key: %w", err)
	}
	start := int64(binary.BigEndian.Uint64(b[n:]) ^ 1<<63)
	end := int64(binary.BigEndian.Uint64(b[n+8:]) ^ 1<<63)
	return window.Keyed[K]{Key: key, Window: window.Window{Start: time.UnixMilli(start).UTC(), End: time.UnixMilli(end).UTC()}}, nil
}
