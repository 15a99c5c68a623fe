package stream

import (
	"fmt"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Table is a changelog stream read as a table: the latest value of each
// key. Tables come from aggregations (Count, Reduce, Aggregate), from
// FromTable and from table-table joins, each materialized in a store of
// each task; Filter and MapValues derive tables that are views of their
// source's store (see Table.Filter). Streams look values up in them with
// Join and LeftJoin; tables join tables with Table.Join, LeftJoin and
// OuterJoin.
type Table[K, V any] struct {
	b   *Builder
	out *outlet[K, V]
	// store is the store the table's values are read from: its own, or
	// for a view, its source's.
	store *storeSpec
	ks    serde.Serde[K]
	// view returns how a task reads the table's current value of a key.
	view func(t *task) (getter[K, V], error)
}

// getter returns a table's current value of a key, and whether it has one.
type getter[K, V any] func(K) (V, bool, error)

// storeView returns the view of a table materialized in store.
func storeView[K, V any](store *storeSpec, op string) func(t *task) (getter[K, V], error) {
	return func(t *task) (getter[K, V], error) {
		kv, ok := t.stores[store].(*state.KeyValue[K, V])
		if !ok {
			return nil, fmt.Errorf("stream: %s: table store %q missing in task %d_%d", op, store.name, t.id.Subtopology, t.id.Partition)
		}
		return kv.Get, nil
	}
}

// ToStream returns the table's updates as a stream: one record per input
// record that changed a key, carrying the new value, and a tombstone
// (Record.Deleted; written by a sink as a null value) per delete: a null
// value of a FromTable topic, a key that stopped passing a Filter, a
// table-table join result that disappeared. Stateless stream operators
// pass a tombstone on with its zero value (Map and MapValues make it an
// ordinary record): check Record.Deleted in a Process to tell.
func (t Table[K, V]) ToStream() Stream[K, V] { return Stream[K, V]{b: t.b, out: t.out} }

// FromTable reads topic as a table: each record upserts its key, a null
// value deletes it. The topic is its own changelog: restoring a task
// replays the topic itself, so no second copy is written. The store is
// named after the operator (stream.Named), or after the topic.
//
// The topic should be compacted. Its partitions must match those of the
// streams joined with it (co-partitioning is checked at start).
func FromTable[K, V any](b *Builder, topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V], opts ...Option) Table[K, V] {
	n := b.add(kindSource, "table", nodeOptions(opts))
	n.topics = []string{topic}
	b.checkTopic(n, topic)
	if keySerde == nil || valueSerde == nil {
		b.errorf("table source %s (topic %q) has no %s serde: pass one to FromTable", n.name, topic, whichNil(keySerde == nil, valueSerde == nil))
	}
	name := topic
	if n.named {
		name = n.name
	}
	store := NewKeyValueStore(b, name, keySerde, valueSerde)
	store.s.sourceTopic = topic
	store.s.users = append(store.s.users, n)
	n.stores = []*storeSpec{store.s}
	src := &tableSourceSpec[K, V]{store: store.s}
	src.out.node = n
	n.raw = src
	return Table[K, V]{b: b, out: &src.out, store: store.s, ks: keySerde, view: storeView[K, V](store.s, "table "+n.name)}
}

type tableSourceSpec[K, V any] struct {
	store *storeSpec
	out   outlet[K, V]
}

func (s *tableSourceSpec[K, V]) instantiateRaw(t *task) (rawSink, error) {
	next, err := s.out.build(t)
	if err != nil {
		return nil, err
	}
	kv, ok := t.stores[s.store].(*state.KeyValue[K, V])
	if !ok {
		return nil, fmt.Errorf("stream: table %s: store %q missing in task %d_%d", s.out.node.name, s.store.name, t.id.Subtopology, t.id.Partition)
	}
	return &tableSource[K, V]{t: t, name: s.out.node.name, kv: kv, next: next}, nil
}

// tableSource materializes a topic into its store. The topic being the
// changelog, the task's checkpoint for it is the offset after the last
// record applied.
type tableSource[K, V any] struct {
	t    *task
	name string
	kv   *state.KeyValue[K, V]
	next sink[K, V]
}

func (s *tableSource[K, V]) pushRaw(rec *kgo.Record) error {
	s.t.sourceOffsets[rec.Topic] = rec.Offset + 1
	k, err := s.kv.KeyCodec().Decode(rec.Key)
	if err != nil {
		return &NodeError{Node: s.name, Err: fmt.Errorf("key: %w", err)}
	}
	if rec.Value == nil {
		if err := s.kv.Delete(k); err != nil {
			return err
		}
		return s.next.push(Record[K, V]{key: k, ts: rec.Timestamp, headers: Headers{h: rec.Headers}, deleted: true,
			origin: Origin{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}})
	}
	v, err := s.kv.ValueCodec().Decode(rec.Value)
	if err != nil {
		return &NodeError{Node: s.name, Err: fmt.Errorf("value: %w", err)}
	}
	if err := s.kv.Put(k, v); err != nil {
		return err
	}
	return s.next.push(Record[K, V]{key: k, value: v, ts: rec.Timestamp, headers: Headers{h: rec.Headers},
		origin: Origin{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}})
}

// Join emits joiner(key, value, tableValue) for each record of s whose key
// is in table, and drops the others. The stream and the table must be
// co-partitioned: same key, same partition count (checked at start); after
// an operator that may change keys, Repartition the stream first. The
// table may be a view (Table.Filter, MapValues): the lookup then sees the
// derived value. Tombstones of s (from a Table.ToStream) are dropped.
func (s Stream[K, V]) Join[VT, VR any](table Table[K, VT], joiner func(key K, value V, tableValue VT) VR, opts ...Option) Stream[K, VR] {
	if joiner == nil {
		s.b.errorf("Join: joiner must not be nil")
	}
	return join(s, table, "join", func(k K, v V, tv VT, found bool) (VR, bool) {
		if !found {
			var zero VR
			return zero, false
		}
		return joiner(k, v, tv), true
	}, nodeOptions(opts))
}

// LeftJoin emits joiner(key, value, tableValue, found) for every record of
// s; found is false (and tableValue the zero value) when the key is not in
// the table. Co-partitioning as for Join.
func (s Stream[K, V]) LeftJoin[VT, VR any](table Table[K, VT], joiner func(key K, value V, tableValue VT, found bool) VR, opts ...Option) Stream[K, VR] {
	if joiner == nil {
		s.b.errorf("LeftJoin: joiner must not be nil")
	}
	return join(s, table, "leftjoin", func(k K, v V, tv VT, found bool) (VR, bool) {
		return joiner(k, v, tv, found), true
	}, nodeOptions(opts))
}

func join[K, V, VT, VR any](s Stream[K, V], table Table[K, VT], op string, joiner func(K, V, VT, bool) (VR, bool), opts []nodeOption) Stream[K, VR] {
	if s.out.node.rekeyed {
		s.b.errorf("%s after %s, which may change keys: call Repartition before joining so that keys and partitions match", op, s.out.node.name)
	}
	if table.b != s.b {
		s.b.errorf("%s: the table comes from another Builder", op)
	}
	out := then(s, op, opts, func(t *task, next sink[K, VR]) (sink[K, V], error) {
		get, err := table.view(t)
		if err != nil {
			return nil, err
		}
		return sinkFunc[K, V](func(r Record[K, V]) error {
			if r.deleted {
				return nil // a tombstone of a Table.ToStream looks nothing up
			}
			tv, found, err := get(r.key)
			if err != nil {
				return err
			}
			vr, emit := joiner(r.key, r.value, tv, found)
			if !emit {
				return nil
			}
			return next.push(Record[K, VR]{key: r.key, value: vr, ts: r.ts, headers: r.headers, origin: r.origin})
		}), nil
	})
	// The join reads the table's store: it must run in the table's tasks.
	jn, tn := out.out.node, table.out.node
	jn.peers = append(jn.peers, tn)
	tn.peers = append(tn.peers, jn)
	jn.reads = append(jn.reads, table.store)
	return out
}
