package stream

// Filter returns the table of t's keys whose current value satisfies
// pred. An update whose new value fails pred becomes a delete downstream:
// a tombstone of its key (ToStream forwards it), as the key leaves the
// filtered table. Filter keeps no state, so such a tombstone is also sent
// for a key that was not in the filtered table before; consumers of the
// table's stream treat a delete of a missing key as a no-op, as Kafka
// does.
//
// # Materialization
//
// The filtered table is not materialized: it has no store of its own and
// no changelog. A lookup (a stream-table Join, a table-table join) reads
// t's store and applies pred to the value found, so it sees exactly what
// the filtered table holds. As Kafka Streams without Materialized, this
// costs one pred call per lookup and no storage; to keep a copy of the
// filtered table, aggregate its stream or join it into a store.
func (t Table[K, V]) Filter(pred func(key K, value V) bool, opts ...Option) Table[K, V] {
	out := then(Stream[K, V]{b: t.b, out: t.out}, "tablefilter", nodeOptions(opts), func(_ *task, next sink[K, V]) (sink[K, V], error) {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			if r.deleted || pred(r.key, r.value) {
				return next.push(r)
			}
			return next.push(Record[K, V]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin, deleted: true})
		}), nil
	})
	if pred == nil {
		t.b.errorf("%s: function is nil", out.out.node.name)
	}
	parent := t.view
	view := func(tk *task) (getter[K, V], error) {
		get, err := parent(tk)
		if err != nil {
			return nil, err
		}
		return func(k K) (V, bool, error) {
			v, found, err := get(k)
			if err != nil || !found || !pred(k, v) {
				var zero V
				return zero, false, err
			}
			return v, true, nil
		}, nil
	}
	return Table[K, V]{b: t.b, out: out.out, store: t.store, ks: t.ks, view: view}
}

// MapValues returns the table of t's keys with each value replaced by
// f(value), possibly of another type. Deletes stay deletes. Like Filter,
// the result is a view, not materialized: a lookup applies f to the value
// in t's store.
func (t Table[K, V]) MapValues[V2 any](f func(value V) V2, opts ...Option) Table[K, V2] {
	out := then(Stream[K, V]{b: t.b, out: t.out}, "tablemapvalues", nodeOptions(opts), func(_ *task, next sink[K, V2]) (sink[K, V], error) {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			if r.deleted {
				return next.push(Record[K, V2]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin, deleted: true})
			}
			return next.push(Record[K, V2]{key: r.key, value: f(r.value), ts: r.ts, headers: r.headers, origin: r.origin})
		}), nil
	})
	if f == nil {
		t.b.errorf("%s: function is nil", out.out.node.name)
	}
	parent := t.view
	view := func(tk *task) (getter[K, V2], error) {
		get, err := parent(tk)
		if err != nil {
			return nil, err
		}
		return func(k K) (V2, bool, error) {
			var zero V2
			v, found, err := get(k)
			if err != nil || !found {
				return zero, false, err
			}
			return f(v), true, nil
		}, nil
	}
	return Table[K, V2]{b: t.b, out: out.out, store: t.store, ks: t.ks, view: view}
}
