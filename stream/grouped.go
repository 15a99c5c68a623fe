package stream

import (
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
)

// repartition writes s to the internal topic `<app-id>-<name>-repartition`
// and returns the stream read back from it: records land on the partition
// of their current key, in a new sub-topology. The topic is created by the
// runtime with as many partitions as the upstream sub-topology's sources,
// and written inside the same transaction as everything else.
func repartition[K, V any](s Stream[K, V], name string, ks serde.Serde[K], vs serde.Serde[V]) Stream[K, V] {
	topic := topology.RepartitionTopic(s.b.appID, name)
	s.To(topic, ks, vs, Named(name+"-repartition-sink"))
	s.b.nodes[len(s.b.nodes)-1].internal = true
	out := From(s.b, topic, ks, vs, Named(name+"-repartition-source"))
	out.out.node.internal = true
	return out
}

// Repartition sends the stream through an internal repartition topic named
// after name (`<app-id>-<name>-repartition`), so that each record lands on
// the partition of its key. GroupBy and GroupByKey do this when they must;
// call it to co-partition a re-keyed stream with a table before a Join.
func (s Stream[K, V]) Repartition(name string, keySerde serde.Serde[K], valueSerde serde.Serde[V]) Stream[K, V] {
	if name == "" {
		s.b.errorf("Repartition needs a name: it names the internal topic")
	}
	return repartition(s, name, keySerde, valueSerde)
}

// Grouped is a stream grouped by key, ready to aggregate: records with the
// same key are in the same partition, so one task sees all of them.
type Grouped[K, V any] struct {
	s  Stream[K, V]
	ks serde.Serde[K]
	vs serde.Serde[V]
}

// GroupByKey groups the stream by its key. If an operator upstream may have
// changed the keys (Map, SelectKey, FlatMap, Process), the stream is first
// repartitioned through `<app-id>-<name>-repartition`, which needs the
// operator to be Named; otherwise no topic is involved.
func (s Stream[K, V]) GroupByKey(keySerde serde.Serde[K], valueSerde serde.Serde[V], opts ...Option) Grouped[K, V] {
	if s.out.node.rekeyed {
		var o nodeOpts
		for _, opt := range opts {
			opt.applyNode(&o)
		}
		if o.name == "" {
			s.b.errorf("GroupByKey after %s, which may change keys, repartitions: give it a name with stream.Named (it names the repartition topic)", s.out.node.name)
			o.name = "groupbykey"
		}
		s = repartition(s, o.name, keySerde, valueSerde)
	}
	return Grouped[K, V]{s: s, ks: keySerde, vs: valueSerde}
}

// GroupBy re-keys the stream with key and groups it by the new key, through
// the repartition topic `<app-id>-<name>-repartition`. The name is
// required: an empty one is a Build error.
func (s Stream[K, V]) GroupBy[K2 any](name string, key func(K, V) K2, keySerde serde.Serde[K2], valueSerde serde.Serde[V]) Grouped[K2, V] {
	if name == "" {
		s.b.errorf("GroupBy needs a name: it names the repartition topic")
		name = "groupby"
	}
	rekeyed := s.SelectKey(key, Named(name+"-key"))
	return Grouped[K2, V]{s: repartition(rekeyed, name, keySerde, valueSerde), ks: keySerde, vs: valueSerde}
}

// Aggregate folds the values of each key into an aggregate of type A,
// starting from init() and applying add for every record. The aggregate of
// each key lives in a store of that name (required), changelogged to `<app-id>-<name>-changelog`; the returned table
// emits the new aggregate for every input record.
//
// add must be deterministic: after a transaction aborts, its records are
// added again to the aggregate as it was committed.
func (g Grouped[K, V]) Aggregate[A any](name string, init func() A, add func(key K, value V, agg A) A, aggSerde serde.Serde[A]) Table[K, A] {
	if init == nil || add == nil {
		g.s.b.errorf("Aggregate: init and add must not be nil")
		return aggregate[K, V, A](g, nil, aggSerde, "aggregate", named(name))
	}
	return aggregate(g, initThenAdd(init, add), aggSerde, "aggregate", named(name))
}

// Count counts the records of each key (values serde.Int64). The name
// (required) is the store's.
func (g Grouped[K, V]) Count(name string) Table[K, int64] {
	return aggregate(g, countAdder[K, V], serde.Int64, "count", named(name))
}

// Reduce combines the values of each key with reduce; the first value of a
// key is its own aggregate. The name (required) is the store's.
func (g Grouped[K, V]) Reduce(name string, reduce func(agg, value V) V) Table[K, V] {
	if reduce == nil {
		g.s.b.errorf("Reduce: reduce must not be nil")
		return aggregate[K, V, V](g, nil, g.vs, "reduce", named(name))
	}
	return aggregate(g, reduceAdder[K](reduce), g.vs, "reduce", named(name))
}

// initThenAdd is the adder of an Aggregate: a key's (or window's) first
// record adds to init(), every later one to the aggregate so far.
func initThenAdd[K, V, A any](init func() A, add func(K, V, A) A) func(K, V, A, bool) A {
	return func(k K, v V, agg A, found bool) A {
		if !found {
			agg = init()
		}
		return add(k, v, agg)
	}
}

// reduceAdder is the adder of a Reduce: a first value is its own
// aggregate.
func reduceAdder[K, V any](reduce func(agg, value V) V) func(K, V, V, bool) V {
	return func(_ K, v V, agg V, found bool) V {
		if !found {
			return v
		}
		return reduce(agg, v)
	}
}

// countAdder is the adder of a Count.
func countAdder[K, V any](_ K, _ V, n int64, _ bool) int64 { return n + 1 }

// aggregate is the stateful node behind Aggregate, Count and Reduce.
func aggregate[K, V, A any](g Grouped[K, V], add func(K, V, A, bool) A, aggSerde serde.Serde[A], op string, opts []nodeOption) Table[K, A] {
	b := g.s.b
	o := b.stateful(op, "its store and changelog", opts)
	store := NewKeyValueStore(b, o.name, g.ks, aggSerde)
	out := then(g.s, op, append(opts, WithStores(store)), func(t *task, next sink[K, A]) (sink[K, V], error) {
		kv := t.stores[store.s].(*state.KeyValue[K, A])
		return sinkFunc[K, V](func(r Record[K, V]) error {
			agg, err := kv.Update(r.key, func(old A, found bool) (A, error) {
				return add(r.key, r.value, old, found), nil
			})
			if err != nil {
				return err
			}
			return next.push(Record[K, A]{key: r.key, value: agg, ts: r.ts, headers: r.headers, origin: r.origin})
		}), nil
	})
	return Table[K, A]{b: b, out: out.out, store: store.s, ks: g.ks, view: storeView[K, A](store.s, op+" "+o.name)}
}
