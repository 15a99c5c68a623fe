package stream

import (
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
)

// Join joins table t with other, a table with the same key type, into a
// new table: a key is in it while it is in both, with the value
// joiner(key, value, otherValue). Every update of either side emits the
// key's new joined value; a delete on either side (or a Filter the key no
// longer passes) that removes the key from the result emits a tombstone,
// and only then. Each output record carries the timestamp of the update
// that caused it.
//
// The result is materialized: its values live in a store of that name
// (required) (changelogged to `<app-id>-<name>-changelog`, with
// valueSerde and t's key serde), which streams can Join and tables join
// again. The two tables must be co-partitioned: same key, same partition
// count of their source topics (checked when a worker starts).
func (t Table[K, V]) Join[VO, VR any](name string, other Table[K, VO], joiner func(key K, value V, otherValue VO) VR, valueSerde serde.Serde[VR]) Table[K, VR] {
	if joiner == nil {
		t.b.errorf("table Join: joiner must not be nil")
	}
	return joinTables(t, other, innerJoin, func(k K, v V, _ bool, vo VO, _ bool) VR { return joiner(k, v, vo) }, valueSerde, "tablejoin", named(name))
}

// LeftJoin is Join keeping every key of t: its value is joiner(key,
// value, otherValue, found), found false (and otherValue the zero value)
// while other lacks the key. A delete in t removes the key.
func (t Table[K, V]) LeftJoin[VO, VR any](name string, other Table[K, VO], joiner func(key K, value V, otherValue VO, found bool) VR, valueSerde serde.Serde[VR]) Table[K, VR] {
	if joiner == nil {
		t.b.errorf("table LeftJoin: joiner must not be nil")
	}
	return joinTables(t, other, leftJoin, func(k K, v V, _ bool, vo VO, found bool) VR { return joiner(k, v, vo, found) }, valueSerde, "tableleftjoin", named(name))
}

// OuterJoin is Join keeping every key of either table: its value is
// joiner(key, value, hasValue, otherValue, hasOther), the missing side
// the zero value. The key leaves the result when it is in neither.
func (t Table[K, V]) OuterJoin[VO, VR any](name string, other Table[K, VO], joiner func(key K, value V, hasValue bool, otherValue VO, hasOther bool) VR, valueSerde serde.Serde[VR]) Table[K, VR] {
	if joiner == nil {
		t.b.errorf("table OuterJoin: joiner must not be nil")
	}
	return joinTables(t, other, outerJoin, joiner, valueSerde, "tableouterjoin", named(name))
}

// joinTables adds the node behind the table-table joins. joiner takes the
// outer join's form.
func joinTables[K, V, VO, VR any](t Table[K, V], other Table[K, VO], kind joinKind, joiner func(K, V, bool, VO, bool) VR, vs serde.Serde[VR], op string, opts []nodeOption) Table[K, VR] {
	b := t.b
	o := b.stateful(op, "the store of its result", opts)
	if other.b != b {
		b.errorf("%s %s: the other table comes from another Builder", op, o.name)
		return Table[K, VR]{b: b, out: &outlet[K, VR]{node: &node{name: "foreign"}}}
	}
	if vs == nil {
		b.errorf("%s %s: the value serde is nil", op, o.name)
	}
	store := NewKeyValueStore(b, o.name, t.ks, vs)
	n := b.add(kindProcessor, op, append(opts, WithStores(store)), t.out.node, other.out.node)
	spec := &tableJoinSpec[K, V, VO, VR]{kind: kind, joiner: joiner, store: store.s, left: t.view, right: other.view}
	spec.out.node = n
	t.out.children = append(t.out.children, tableJoinLeftInlet[K, V, VO, VR]{spec})
	other.out.children = append(other.out.children, tableJoinRightInlet[K, V, VO, VR]{spec})
	return Table[K, VR]{b: b, out: &spec.out, store: store.s, ks: t.ks, view: storeView[K, VR](store.s, op+" "+o.name)}
}

type tableJoinSpec[K, V, VO, VR any] struct {
	kind   joinKind
	joiner func(K, V, bool, VO, bool) VR
	store  *storeSpec
	left   func(*task) (getter[K, V], error)
	right  func(*task) (getter[K, VO], error)
	out    outlet[K, VR]
}

// instance returns the join's runtime node in t, made once: both inputs
// reach it.
func (s *tableJoinSpec[K, V, VO, VR]) instance(t *task) (*tableJoinNode[K, V, VO, VR], error) {
	if n, ok := t.instances[s.out.node]; ok {
		return n.(*tableJoinNode[K, V, VO, VR]), nil
	}
	next, err := s.out.build(t)
	if err != nil {
		return nil, err
	}
	n := &tableJoinNode[K, V, VO, VR]{spec: s, next: next, result: t.stores[s.store].(*state.KeyValue[K, VR])}
	if n.left, err = s.left(t); err != nil {
		return nil, err
	}
	if n.right, err = s.right(t); err != nil {
		return nil, err
	}
	t.instances[s.out.node] = n
	return n, nil
}

type tableJoinLeftInlet[K, V, VO, VR any] struct{ s *tableJoinSpec[K, V, VO, VR] }

func (i tableJoinLeftInlet[K, V, VO, VR]) instantiate(t *task) (sink[K, V], error) {
	n, err := i.s.instance(t)
	if err != nil {
		return nil, err
	}
	return sinkFunc[K, V](n.pushLeft), nil
}

type tableJoinRightInlet[K, V, VO, VR any] struct{ s *tableJoinSpec[K, V, VO, VR] }

func (i tableJoinRightInlet[K, V, VO, VR]) instantiate(t *task) (sink[K, VO], error) {
	n, err := i.s.instance(t)
	if err != nil {
		return nil, err
	}
	return sinkFunc[K, VO](n.pushRight), nil
}

// tableJoinNode is a table-table join in one task: an update of one side
// reads the other side's current value and rewrites the key's result.
type tableJoinNode[K, V, VO, VR any] struct {
	spec   *tableJoinSpec[K, V, VO, VR]
	next   sink[K, VR]
	result *state.KeyValue[K, VR]
	left   getter[K, V]
	right  getter[K, VO]
}

func (n *tableJoinNode[K, V, VO, VR]) pushLeft(r Record[K, V]) error {
	vo, hasOther, err := n.right(r.key)
	if err != nil {
		return err
	}
	return n.update(r.key, r.value, !r.deleted, vo, hasOther, Record[K, VR]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin})
}

func (n *tableJoinNode[K, V, VO, VR]) pushRight(r Record[K, VO]) error {
	v, hasValue, err := n.left(r.key)
	if err != nil {
		return err
	}
	return n.update(r.key, v, hasValue, r.value, !r.deleted, Record[K, VR]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin})
}

// update sets the key's result from both sides' values and emits it, or,
// when the key leaves the result, deletes it and emits a tombstone. out
// is the output record's key, timestamp, headers and origin.
func (n *tableJoinNode[K, V, VO, VR]) update(k K, v V, hasValue bool, vo VO, hasOther bool, out Record[K, VR]) error {
	var present bool
	switch n.spec.kind {
	case innerJoin:
		present = hasValue && hasOther
	case leftJoin:
		present = hasValue
	default:
		present = hasValue || hasOther
	}
	if present {
		out.value = n.spec.joiner(k, v, hasValue, vo, hasOther)
		if err := n.result.Put(k, out.value); err != nil {
			return err
		}
		return n.next.push(out)
	}
	_, existed, err := n.result.Get(k)
	if err != nil || !existed {
		return err
	}
	if err := n.result.Delete(k); err != nil {
		return err
	}
	out.deleted = true
	return n.next.push(out)
}
