package stream

import (
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// SessionWindowed is a grouped stream cut into session windows, ready to
// aggregate per key and session.
//
// A session is a key's run of records each within the gap of the next. As
// a half-open window.Window it spans [first, last+1ms): a session of one
// record at t is [t, t+1ms). A record at t joins every session of its key
// within the gap of it (a session [s, e) with s-gap <= t <= e-1ms+gap);
// the sessions it joins merge into one spanning all of them and t, whose
// aggregate is their aggregates merged, plus the record. A record that
// joins none starts a session of its own. A key's sessions are therefore
// always more than the gap apart.
//
// # Closing and late records
//
// A session can still grow while a record within its gap after it would
// not be late, so it closes when stream time reaches its end plus the gap
// plus the grace; with EmitOnClose it then emits its final aggregate once,
// timestamped with its last record. A record is late, dropped and counted
// (TaskStats.Late), when the session it would make (after merging) ends
// before stream time minus the grace, as in Kafka Streams.
//
// # Updates and deletes
//
// Without EmitOnClose every record emits its session's new aggregate,
// keyed by the key and the session's window; a session merged away or
// grown (its window changed, so its key did) is first forwarded as a
// tombstone (Tombstone: a sink writes a null value), as Kafka Streams
// forwards null for it. A table read from the output topic thus holds
// each key's current sessions.
type SessionWindowed[K, V any] struct {
	g    Grouped[K, V]
	spec window.Session
}

// SessionWindowedBy cuts the grouped stream g into the session windows of
// spec, a gap and a grace:
//
//	visits := stream.SessionWindowedBy(clicks.GroupByKey(serde.String, serde.String),
//		window.Session{Gap: 30 * time.Minute, Grace: time.Minute}).
//		Count("visits")
//
// It is a function, not a method of Grouped, for the reason WindowedBy is.
func SessionWindowedBy[K, V any](g Grouped[K, V], spec window.Session) SessionWindowed[K, V] {
	if err := spec.Validate(); err != nil {
		g.s.b.errorf("SessionWindowedBy: %v", err)
	}
	return SessionWindowed[K, V]{g: g, spec: spec}
}

// Aggregate folds the values of each key and session into an aggregate of
// type A: a session's first record adds to init(), every later one with
// add, and when a record merges sessions, merge combines their aggregates
// (earliest session first) before add. The name (required) is its
// store's, changelogged to `<app-id>-<name>-changelog`. A session's
// aggregate is kept until the session closes (its end plus the gap plus
// the grace, in stream time) and then removed (a tombstone in the
// changelog); a session merged away is removed at once.
func (s SessionWindowed[K, V]) Aggregate[A any](name string, init func() A, add func(key K, value V, agg A) A, merge func(key K, a, b A) A, aggSerde serde.Serde[A], opts ...WindowOption) WindowedTable[K, A] {
	if init == nil || add == nil || merge == nil {
		s.g.s.b.errorf("session Aggregate: init, add and merge must not be nil")
	}
	return sessionAggregate(s, initThenAdd(init, add), merge, aggSerde, "session-aggregate", withName(name, opts))
}

// Count counts the records of each key and session (values serde.Int64);
// merged sessions add their counts. The name (required) is its store's.
func (s SessionWindowed[K, V]) Count(name string, opts ...WindowOption) WindowedTable[K, int64] {
	return sessionAggregate(s, countAdder[K, V],
		func(_ K, a, b int64) int64 { return a + b }, serde.Int64, "session-count", withName(name, opts))
}

// Reduce combines the values of each key and session with reduce, which
// also merges the aggregates of sessions a record bridges; a session's
// first value is its own aggregate. The name (required) is its store's.
func (s SessionWindowed[K, V]) Reduce(name string, reduce func(agg, value V) V, opts ...WindowOption) WindowedTable[K, V] {
	if reduce == nil {
		s.g.s.b.errorf("session Reduce: reduce must not be nil")
	}
	return sessionAggregate(s, reduceAdder[K](reduce), func(_ K, a, b V) V { return reduce(a, b) }, s.g.vs, "session-reduce", withName(name, opts))
}

// sessionAggregate is the stateful node behind the session Aggregate,
// Count and Reduce.
func sessionAggregate[K, V, A any](s SessionWindowed[K, V], add func(K, V, A, bool) A, merge func(K, A, A) A, aggSerde serde.Serde[A], op string, opts []nodeOption) WindowedTable[K, A] {
	b := s.g.s.b
	o := b.stateful(op, "its store and changelog", opts)
	if aggSerde == nil {
		b.errorf("%s %s: the aggregate serde is nil", op, o.name)
	}
	store := newKeyedStore[K, A](b, o.name, keyedCodec[K]{ks: s.g.ks, endFirst: true}, state.Codec[A](aggSerde))
	out := then(s.g.s, op, append(opts, WithStores(store)), func(t *task, next sink[window.Keyed[K], A]) (sink[K, V], error) {
		n := &sessionNode[K, V, A]{t: t, spec: s.spec, add: add, merge: merge, onClose: o.emitOnClose, next: next,
			sessions: t.stores[store.s].(*state.Expiring[window.Keyed[K], A])}
		n.emit = n.emitClosed
		return n, nil
	})
	return WindowedTable[K, A]{b: b, out: out.out}
}

type sessionNode[K, V, A any] struct {
	t        *task
	spec     window.Session
	add      func(K, V, A, bool) A
	merge    func(K, A, A) A
	onClose  bool
	next     sink[window.Keyed[K], A]
	sessions *state.Expiring[window.Keyed[K], A]
	emit     func(window.Keyed[K], A) error // emitClosed, made once
	found    []sessionEntry[K, A]
}

type sessionEntry[K, A any] struct {
	key window.Keyed[K]
	agg A
}

func (n *sessionNode[K, V, A]) push(r Record[K, V]) error {
	// Sessions that can no longer grow go first, as windows do.
	if err := n.close(); err != nil {
		return err
	}
	ts := millis(r.ts.UnixMilli())
	// The store orders a key's sessions by end, then start: the sessions
	// within the gap of ts are the run from the first ending at or after
	// ts-gap (End > ts-gap) to the last starting at or before ts+gap.
	from := window.Keyed[K]{Key: r.key, Window: window.Window{Start: ts.Add(-n.spec.Gap), End: ts.Add(-n.spec.Gap)}}
	to := window.Keyed[K]{Key: r.key, Window: window.Window{Start: maxTime, End: maxTime}}
	it := n.sessions.Range(&from, &to)
	n.found = n.found[:0]
	for it.Next() {
		if it.Key().Window.Start.After(ts.Add(n.spec.Gap)) {
			break // a key's sessions are disjoint: the later ones start later still
		}
		n.found = append(n.found, sessionEntry[K, A]{key: it.Key(), agg: it.Value()})
	}
	if err := it.Close(); err != nil {
		return err
	}
	merged := window.Window{Start: ts, End: ts.Add(time.Millisecond)}
	var agg A
	for i, f := range n.found {
		if f.key.Window.Start.Before(merged.Start) {
			merged.Start = f.key.Window.Start
		}
		if f.key.Window.End.After(merged.End) {
			merged.End = f.key.Window.End
		}
		if i == 0 {
			agg = f.agg
		} else {
			agg = n.merge(r.key, agg, f.agg)
		}
	}
	if !merged.End.Add(n.spec.Grace).After(n.t.streamTime) {
		n.t.stats.Late++
		return nil
	}
	agg = n.add(r.key, r.value, agg, len(n.found) > 0)
	for _, f := range n.found {
		if f.key.Window.Start.Equal(merged.Start) && f.key.Window.End.Equal(merged.End) {
			continue // rewritten in place below
		}
		if err := n.sessions.Delete(f.key); err != nil {
			return err
		}
		if !n.onClose {
			if err := n.next.push(Record[window.Keyed[K], A]{key: f.key, ts: r.ts, headers: r.headers, origin: r.origin, deleted: true}); err != nil {
				return err
			}
		}
	}
	key := window.Keyed[K]{Key: r.key, Window: merged}
	if err := n.sessions.Put(key, agg, n.closesAt(merged)); err != nil {
		return err
	}
	if !n.onClose {
		return n.next.push(Record[window.Keyed[K], A]{key: key, value: agg, ts: r.ts, headers: r.headers, origin: r.origin})
	}
	return nil
}

// closesAt returns when session w closes: when no record joining it can
// arrive that is not late, its end plus the gap plus the grace.
func (n *sessionNode[K, V, A]) closesAt(w window.Window) time.Time {
	return w.End.Add(n.spec.Gap + n.spec.Grace)
}

// close removes the sessions stream time has closed, emitting each one's
// final aggregate under EmitOnClose.
func (n *sessionNode[K, V, A]) close() error {
	if n.onClose {
		return n.sessions.Expire(n.t.streamTime, n.emit)
	}
	return n.sessions.Expire(n.t.streamTime, nil)
}

// emitClosed forwards a closed session's final aggregate, at its last
// record's time.
func (n *sessionNode[K, V, A]) emitClosed(key window.Keyed[K], agg A) error {
	return n.next.push(Record[window.Keyed[K], A]{key: key, value: agg, ts: key.Window.End.Add(-time.Millisecond)})
}
