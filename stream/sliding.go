package stream

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// Sliding windows (window.Sliding), as Kafka Streams' SlidingWindows
// (KIP-450): the windows are those the records define. Kafka Streams'
// window [t-Difference, t] (both ends included) is the half-open
// window.Window [t-Difference, t+1ms). A record at t:
//
//   - adds itself to every window of its key that contains it;
//   - creates its left window [t-Difference, t] when there is none,
//     starting from the aggregate of the records before it within
//     Difference (the aggregate of the latest window that ends before t);
//   - creates the right window of the record before it, [prev+1ms,
//     prev+1ms+Difference], when t falls in it and it does not exist yet;
//   - creates its own right window [t+1ms, t+1ms+Difference] when records
//     after t (an out-of-order t) fall in it, from the aggregate of those.
//
// So every window holds a distinct, non-empty set of records, and an
// empty window is never created nor emitted.
//
// # Closing and state
//
// A window closes when stream time reaches its end plus the grace: it then
// emits no more updates (and, with EmitOnClose, emits its final aggregate
// once). A record is late, dropped and counted, when the last window it
// could belong to, [t, t+Difference], has closed.
//
// A window stays in the store, updated silently, for twice Difference
// after it closes: an out-of-order record within the grace builds its
// left window from the windows before it, which may have closed already.
// Kafka Streams keeps closed windows too (its store's retention), but does
// not update them; keeping them up to date makes every open window hold
// exactly the records in its range, whatever order they came in. Every
// window a record could read (a start within 2×Difference before it) is
// still there while the record is not late.
//
// The store's value is the aggregate, the timestamp of the window's latest
// record, and whether the window's close was handled (EmitOnClose).

// slidingAgg is a sliding window's stored value.
type slidingAgg[A any] struct {
	agg A
	// last is the timestamp of the window's latest record, in
	// milliseconds: the record before t within a window that ends before
	// t, and whether a right window is empty.
	last int64
	// closed is set once the window's close was handled (its final
	// aggregate emitted, under EmitOnClose): it is then kept only for the
	// records after it.
	closed bool
}

// slidingAggCodec encodes a slidingAgg as a flags byte (1: closed), the
// latest record's timestamp (8 bytes) and the aggregate.
type slidingAggCodec[A any] struct{ as serde.Serde[A] }

func (c slidingAggCodec[A]) Encode(v slidingAgg[A]) ([]byte, error) {
	ab, err := c.as.Encode(v.agg)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 9+len(ab))
	var flags byte
	if v.closed {
		flags = 1
	}
	out = append(out, flags)
	out = binary.BigEndian.AppendUint64(out, uint64(v.last))
	return append(out, ab...), nil
}

func (c slidingAggCodec[A]) Decode(b []byte) (slidingAgg[A], error) {
	var v slidingAgg[A]
	if len(b) < 9 {
		return v, errors.New("stream: sliding window value shorter than its header")
	}
	agg, err := c.as.Decode(b[9:])
	if err != nil {
		return v, err
	}
	return slidingAgg[A]{agg: agg, last: int64(binary.BigEndian.Uint64(b[1:])), closed: b[0]&1 != 0}, nil
}

// slidingAggregate is the stateful node behind Count, Aggregate and Reduce
// of sliding windows.
func slidingAggregate[K, V, A any](w Windowed[K, V], spec window.Sliding, add func(K, V, A, bool) A, aggSerde serde.Serde[A], op string, o nodeOpts, opts []nodeOption) WindowedTable[K, A] {
	b := w.g.s.b
	store := newKeyedStore[K, slidingAgg[A]](b, o.name, keyedCodec[K]{ks: w.g.ks}, slidingAggCodec[A]{as: aggSerde})
	out := then(w.g.s, op, append(opts, WithStores(store)), func(t *task, next sink[window.Keyed[K], A]) (sink[K, V], error) {
		n := &slidingNode[K, V, A]{t: t, spec: spec, diff: spec.Difference.Milliseconds(), grace: spec.Grace.Milliseconds(),
			add: add, onClose: o.emitOnClose, next: next,
			windows: t.stores[store.s].(*state.Expiring[window.Keyed[K], slidingAgg[A]])}
		n.collect = n.collectDue
		return n, nil
	})
	return WindowedTable[K, A]{b: b, out: out.out}
}

type slidingNode[K, V, A any] struct {
	t           *task
	spec        window.Sliding
	diff, grace int64 // spec's, in milliseconds
	add         func(K, V, A, bool) A
	onClose     bool
	next        sink[window.Keyed[K], A]
	windows     *state.Expiring[window.Keyed[K], slidingAgg[A]]
	collect     func(window.Keyed[K], slidingAgg[A]) error // collectDue, made once
	scan        []slidingEntry[K, A]
	due         []slidingEntry[K, A]
}

type slidingEntry[K, A any] struct {
	key window.Keyed[K]
	v   slidingAgg[A]
}

// window returns the sliding window starting at start (milliseconds).
func (n *slidingNode[K, V, A]) window(start int64) window.Window {
	return window.Window{Start: millis(start), End: millis(start + n.diff + 1)}
}

func (n *slidingNode[K, V, A]) push(r Record[K, V]) error {
	if err := n.close(); err != nil {
		return err
	}
	ts, d, now := r.ts.UnixMilli(), n.diff, n.t.streamTime.UnixMilli()
	if ts+d+1+n.grace <= now { // [ts, ts+d], its last possible window, has closed
		n.t.stats.Late++
		return nil
	}
	// The windows this record may read or update start within 2d before
	// it, up to its right window's start.
	from := window.Keyed[K]{Key: r.key, Window: n.window(ts - 2*d)}
	to := window.Keyed[K]{Key: r.key, Window: n.window(ts + 2)}
	it := n.windows.Range(&from, &to)
	n.scan = n.scan[:0]
	for it.Next() {
		n.scan = append(n.scan, slidingEntry[K, A]{key: it.Key(), v: it.Value()})
	}
	if err := it.Close(); err != nil {
		return err
	}
	var (
		before            *slidingAgg[A] // the latest window ending before ts
		after             *slidingAgg[A] // the latest window containing ts and ending after it, before ts is added
		prev              int64          // the latest record before ts
		hasPrev           bool
		hasLeft, hasRight bool
	)
	for i := range n.scan {
		e := &n.scan[i]
		start := e.key.Window.Start.UnixMilli()
		switch end := start + d; {
		case end < ts:
			before, prev, hasPrev = &e.v, e.v.last, true
		case end == ts:
			hasLeft = true
			if e.v.last < ts {
				prev, hasPrev = e.v.last, true
			}
			if err := n.update(r, e.key, e.v); err != nil {
				return err
			}
		case start <= ts:
			v := e.v
			after = &v
			if err := n.update(r, e.key, e.v); err != nil {
				return err
			}
		default: // start == ts+1: ts's right window
			hasRight = true
		}
	}
	if hasPrev && prev+1+d >= ts && !n.scanned(prev+1) {
		// ts is the first record of the previous record's right window.
		if err := n.put(r, window.Keyed[K]{Key: r.key, Window: n.window(prev + 1)}, slidingAgg[A]{agg: n.add(r.key, r.value, *new(A), false), last: ts}); err != nil {
			return err
		}
		// With prev exactly Difference+1ms before ts, that window is
		// also ts's left window.
		hasLeft = hasLeft || prev+1 == ts-d
	}
	if !hasLeft {
		var agg A
		if hasPrev && prev >= ts-d {
			agg = n.add(r.key, r.value, before.agg, true)
		} else {
			agg = n.add(r.key, r.value, agg, false)
		}
		if err := n.put(r, window.Keyed[K]{Key: r.key, Window: n.window(ts - d)}, slidingAgg[A]{agg: agg, last: ts}); err != nil {
			return err
		}
	}
	if !hasRight && after != nil && after.last > ts {
		// An out-of-order record: the records after it, in the window
		// that contains it, form its right window.
		if err := n.put(r, window.Keyed[K]{Key: r.key, Window: n.window(ts + 1)}, slidingAgg[A]{agg: after.agg, last: after.last}); err != nil {
			return err
		}
	}
	return nil
}

// keepUntil returns when window w leaves the store: 2×Difference after it
// closes, when no record that is not late can read it any more.
func (n *slidingNode[K, V, A]) keepUntil(w window.Window) time.Time {
	return window.ClosesAt(n.spec, w).Add(2 * n.spec.Difference)
}

// scanned reports whether the scan found the window starting at start.
func (n *slidingNode[K, V, A]) scanned(start int64) bool {
	for _, e := range n.scan {
		if e.key.Window.Start.UnixMilli() == start {
			return true
		}
	}
	return false
}

// update adds r to the existing window key.
func (n *slidingNode[K, V, A]) update(r Record[K, V], key window.Keyed[K], v slidingAgg[A]) error {
	v.agg = n.add(r.key, r.value, v.agg, true)
	v.last = max(v.last, r.ts.UnixMilli())
	return n.put(r, key, v)
}

// put stores window key's value v, and emits it (without EmitOnClose) if
// the window is open. An open window expires when it closes under
// EmitOnClose (close emits it then), otherwise 2×Difference after; a
// closed one is kept, without being emitted, until then.
func (n *slidingNode[K, V, A]) put(r Record[K, V], key window.Keyed[K], v slidingAgg[A]) error {
	closesAt := window.ClosesAt(n.spec, key.Window)
	open := closesAt.After(n.t.streamTime)
	keep := n.keepUntil(key.Window)
	expires := keep
	if open && n.onClose {
		expires = closesAt
	}
	if !open {
		v.closed = true
		if !keep.After(n.t.streamTime) {
			return nil // no record that is not late can read it
		}
	}
	if err := n.windows.Put(key, v, expires); err != nil {
		return err
	}
	if open && !n.onClose {
		return n.next.push(Record[window.Keyed[K], A]{key: key, value: v.agg, ts: r.ts, headers: r.headers, origin: r.origin})
	}
	return nil
}

// close removes the windows whose time is up: under EmitOnClose, a window
// that closes emits its final aggregate and is stored again, marked
// closed, for the records after it; a window kept that long leaves.
func (n *slidingNode[K, V, A]) close() error {
	if !n.onClose {
		return n.windows.Expire(n.t.streamTime, nil)
	}
	n.due = n.due[:0]
	if err := n.windows.Expire(n.t.streamTime, n.collect); err != nil {
		return err
	}
	for _, e := range n.due {
		if e.v.closed {
			continue
		}
		last := e.key.Window.End.Add(-time.Millisecond)
		if err := n.next.push(Record[window.Keyed[K], A]{key: e.key, value: e.v.agg, ts: last}); err != nil {
			return err
		}
		if keep := n.keepUntil(e.key.Window); keep.After(n.t.streamTime) {
			e.v.closed = true
			if err := n.windows.Put(e.key, e.v, keep); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectDue keeps an expired window for close, which must not write the
// store during Expire.
func (n *slidingNode[K, V, A]) collectDue(key window.Keyed[K], v slidingAgg[A]) error {
	n.due = append(n.due, slidingEntry[K, A]{key: key, v: v})
	return nil
}
