package stream

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Stream is an unbounded sequence of records with keys of type K and values
// of type V. Streams are values: each operator returns a new Stream and
// leaves its receiver usable, so one stream can feed several operators
// (every record goes to all of them, in the order they were added).
//
// A Stream is only valid with the Builder it came from; its methods are not
// safe for concurrent use.
type Stream[K, V any] struct {
	b   *Builder
	out *outlet[K, V]
}

// sinkFunc adapts a function to sink; the stateless operators are closures.
type sinkFunc[K, V any] func(Record[K, V]) error

func (f sinkFunc[K, V]) push(r Record[K, V]) error { return f(r) }

// then adds a one-input operator after s.
func then[K, V, K2, V2 any](s Stream[K, V], op string, opts []nodeOption, mk func(t *task, next sink[K2, V2]) (sink[K, V], error)) Stream[K2, V2] {
	n := s.b.add(kindProcessor, op, opts, s.out.node)
	spec := &opSpec[K, V, K2, V2]{mk: mk}
	spec.out.node = n
	s.out.children = append(s.out.children, spec)
	return Stream[K2, V2]{b: s.b, out: &spec.out}
}

// stateless adds an operator built from a function that needs no task.
func stateless[K, V, K2, V2 any](s Stream[K, V], op string, fnIsNil bool, opts []nodeOption, mk func(next sink[K2, V2]) sink[K, V]) Stream[K2, V2] {
	out := then(s, op, opts, func(_ *task, next sink[K2, V2]) (sink[K, V], error) { return mk(next), nil })
	if fnIsNil {
		s.b.errorf("%s: function is nil", out.out.node.name)
	}
	return out
}

// Filter keeps the records for which pred returns true. A tombstone (a
// delete from Table.ToStream) passes without pred being called.
func (s Stream[K, V]) Filter(pred func(K, V) bool, opts ...Option) Stream[K, V] {
	return stateless(s, "filter", pred == nil, nodeOptions(opts), func(next sink[K, V]) sink[K, V] {
		return &filterNode[K, V]{pred: pred, keep: true, next: next}
	})
}

// filterNode is a struct, not a closure, to save an indirect call per
// record on the most common operator.
type filterNode[K, V any] struct {
	pred func(K, V) bool
	keep bool
	next sink[K, V]
}

func (f *filterNode[K, V]) push(r Record[K, V]) error {
	if r.deleted || f.pred(r.key, r.value) == f.keep {
		return f.next.push(r)
	}
	return nil
}

// FilterNot drops the records for which pred returns true; tombstones
// pass, as for Filter.
func (s Stream[K, V]) FilterNot(pred func(K, V) bool, opts ...Option) Stream[K, V] {
	return stateless(s, "filternot", pred == nil, nodeOptions(opts), func(next sink[K, V]) sink[K, V] {
		return &filterNode[K, V]{pred: pred, keep: false, next: next}
	})
}

// Map replaces each record's key and value, possibly with other types.
// Changing the key of a stream that is later grouped or joined requires a
// repartition, which the stateful operators insert. A tombstone reaches f
// with the zero value and leaves as a tombstone of the key f returns.
func (s Stream[K, V]) Map[K2, V2 any](f func(K, V) (K2, V2), opts ...Option) Stream[K2, V2] {
	return stateless(s, "map", f == nil, nodeOptions(opts), func(next sink[K2, V2]) sink[K, V] {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			k, v := f(r.key, r.value)
			if r.deleted {
				var zero V2
				v = zero
			}
			return next.push(Record[K2, V2]{key: k, value: v, ts: r.ts, headers: r.headers, origin: r.origin, deleted: r.deleted})
		})
	})
}

// MapValues replaces each record's value, possibly with another type. The
// key, timestamp and headers are kept. A tombstone stays one, without f
// being called.
func (s Stream[K, V]) MapValues[V2 any](f func(V) V2, opts ...Option) Stream[K, V2] {
	return stateless(s, "mapvalues", f == nil, nodeOptions(opts), func(next sink[K, V2]) sink[K, V] {
		return &mapValuesNode[K, V, V2]{f: f, next: next}
	})
}

type mapValuesNode[K, V, V2 any] struct {
	f    func(V) V2
	next sink[K, V2]
}

func (m *mapValuesNode[K, V, V2]) push(r Record[K, V]) error {
	if r.deleted {
		return m.next.push(Record[K, V2]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin, deleted: true})
	}
	return m.next.push(Record[K, V2]{key: r.key, value: m.f(r.value), ts: r.ts, headers: r.headers, origin: r.origin})
}

// SelectKey replaces each record's key with f(key, value); a tombstone
// (f sees the zero value) stays one.
func (s Stream[K, V]) SelectKey[K2 any](f func(K, V) K2, opts ...Option) Stream[K2, V] {
	return stateless(s, "selectkey", f == nil, nodeOptions(opts), func(next sink[K2, V]) sink[K, V] {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			return next.push(Record[K2, V]{key: f(r.key, r.value), value: r.value, ts: r.ts, headers: r.headers, origin: r.origin, deleted: r.deleted})
		})
	})
}

// FlatMap replaces each record with zero or more records, in the order f
// returns them. Each keeps the input's timestamp and headers. A tombstone
// reaches f with the zero value and each record f returns for it leaves as
// a tombstone of its key.
func (s Stream[K, V]) FlatMap[K2, V2 any](f func(K, V) []Pair[K2, V2], opts ...Option) Stream[K2, V2] {
	return stateless(s, "flatmap", f == nil, nodeOptions(opts), func(next sink[K2, V2]) sink[K, V] {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			for _, kv := range f(r.key, r.value) {
				out := Record[K2, V2]{key: kv.Key, value: kv.Value, ts: r.ts, headers: r.headers, origin: r.origin, deleted: r.deleted}
				if r.deleted {
					var zero V2
					out.value = zero
				}
				if err := next.push(out); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// FlatMapValues replaces each record with one record per value f returns,
// all with the input's key, timestamp and headers. A tombstone stays one
// tombstone, without f being called.
func (s Stream[K, V]) FlatMapValues[V2 any](f func(V) []V2, opts ...Option) Stream[K, V2] {
	return stateless(s, "flatmapvalues", f == nil, nodeOptions(opts), func(next sink[K, V2]) sink[K, V] {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			if r.deleted {
				return next.push(Record[K, V2]{key: r.key, ts: r.ts, headers: r.headers, origin: r.origin, deleted: true})
			}
			for _, v := range f(r.value) {
				if err := next.push(Record[K, V2]{key: r.key, value: v, ts: r.ts, headers: r.headers, origin: r.origin}); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// Peek calls f for each record (a tombstone with the zero value) and
// passes the record on unchanged. f must
// not have effects outside the topology that matter for correctness: a
// record can be processed more than once when a transaction aborts.
func (s Stream[K, V]) Peek(f func(K, V), opts ...Option) Stream[K, V] {
	return stateless(s, "peek", f == nil, nodeOptions(opts), func(next sink[K, V]) sink[K, V] {
		return sinkFunc[K, V](func(r Record[K, V]) error {
			f(r.key, r.value)
			return next.push(r)
		})
	})
}

// Merge returns a stream with the records of s and other. Both must come
// from the same Builder; their sources then belong to one sub-topology and
// must be co-partitioned. Records keep their relative order within each
// input.
func (s Stream[K, V]) Merge(other Stream[K, V], opts ...Option) Stream[K, V] {
	if other.b != s.b {
		// Connect nothing: the other builder must not feed this one.
		n := s.b.add(kindProcessor, "merge", nodeOptions(opts), s.out.node)
		s.b.errorf("%s: merged streams come from different builders: build both from one Builder", n.name)
		return Stream[K, V]{b: s.b, out: &outlet[K, V]{node: n}}
	}
	n := s.b.add(kindProcessor, "merge", nodeOptions(opts), s.out.node, other.out.node)
	spec := &opSpec[K, V, K, V]{mk: func(_ *task, next sink[K, V]) (sink[K, V], error) { return next, nil }}
	spec.out.node = n
	s.out.children = append(s.out.children, spec)
	other.out.children = append(other.out.children, spec)
	return Stream[K, V]{b: s.b, out: &spec.out}
}

// Branch is one branch of Split: the records for which Pred returns true,
// and did not match an earlier branch, go to it. A nil Pred matches every
// record (a default branch; it must come last).
type Branch[K, V any] struct {
	Name string
	Pred func(K, V) bool
}

// Split routes each record to the first branch whose predicate matches and
// returns one stream per branch, in the order given. Records matching no
// branch are dropped. Branch names must be unique within the split; the
// branch nodes are named `<split-name>-<branch-name>`.
func (s Stream[K, V]) Split(branches []Branch[K, V], opts ...Option) []Stream[K, V] {
	n := s.b.add(kindProcessor, "split", nodeOptions(opts), s.out.node)
	outs := make([]*outlet[K, V], len(branches))
	preds := make([]func(K, V) bool, len(branches))
	seen := map[string]bool{}
	for i, br := range branches {
		if br.Name == "" || seen[br.Name] {
			s.b.errorf("%s: branch %d needs a unique, non-empty name (got %q)", n.name, i, br.Name)
		}
		if br.Pred == nil && i != len(branches)-1 {
			s.b.errorf("%s: branch %q has no predicate but is not the last branch", n.name, br.Name)
		}
		seen[br.Name] = true
		bn := s.b.add(kindProcessor, "branch", []nodeOption{Named(n.name + "-" + br.Name)}, n)
		outs[i] = &outlet[K, V]{node: bn}
		preds[i] = br.Pred
	}
	if len(branches) == 0 {
		s.b.errorf("%s: no branches", n.name)
	}
	spec := &splitSpec[K, V]{node: n, preds: preds, outs: outs}
	s.out.children = append(s.out.children, spec)
	streams := make([]Stream[K, V], len(outs))
	for i, o := range outs {
		streams[i] = Stream[K, V]{b: s.b, out: o}
	}
	return streams
}

type splitSpec[K, V any] struct {
	node  *node
	preds []func(K, V) bool
	outs  []*outlet[K, V]
}

func (s *splitSpec[K, V]) instantiate(t *task) (sink[K, V], error) {
	return memo(t, s.node, func() (sink[K, V], error) {
		nexts := make([]sink[K, V], len(s.outs))
		for i, o := range s.outs {
			next, err := o.build(t)
			if err != nil {
				return nil, err
			}
			nexts[i] = next
		}
		return sinkFunc[K, V](func(r Record[K, V]) error {
			for i, p := range s.preds {
				if p == nil || p(r.key, r.value) {
					return nexts[i].push(r)
				}
			}
			return nil
		}), nil
	})
}

// To writes the stream to topic, encoding keys with keySerde and values with
// valueSerde. Records keep their timestamp and headers; the producer's
// partitioner (murmur2 of the key, like Kafka's) chooses the partition.
func (s Stream[K, V]) To(topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V], opts ...Option) {
	n := s.b.add(kindSink, "sink", nodeOptions(opts), s.out.node)
	n.topics = []string{topic}
	s.b.checkTopic(n, topic)
	if keySerde == nil || valueSerde == nil {
		s.b.errorf("sink %s (topic %q) has no %s serde: pass one to To", n.name, topic, whichNil(keySerde == nil, valueSerde == nil))
	}
	s.out.children = append(s.out.children, &sinkSpec[K, V]{node: n, topic: topic, ks: newEncoder(keySerde), vs: newEncoder(valueSerde)})
}

type sinkSpec[K, V any] struct {
	node  *node
	topic string
	ks    encoder[K]
	vs    encoder[V]
}

func (s *sinkSpec[K, V]) instantiate(t *task) (sink[K, V], error) {
	return memo(t, s.node, func() (sink[K, V], error) {
		n := &sinkNode[K, V]{spec: s, t: t}
		if t.cfg.MaxMessageBytes != nil {
			n.limit = t.cfg.MaxMessageBytes(s.topic)
		}
		return n, nil
	})
}

type sinkNode[K, V any] struct {
	spec  *sinkSpec[K, V]
	t     *task
	limit int // max.message.bytes of the topic; 0: none
}

func (s *sinkNode[K, V]) push(r Record[K, V]) error {
	k, err := s.spec.ks.encode(s.t, r.key)
	if err != nil {
		return &NodeError{Node: s.spec.node.name, Err: fmt.Errorf("key: %w", err)}
	}
	var v []byte // a tombstone's value is null
	if !r.deleted {
		if v, err = s.spec.vs.encode(s.t, r.value); err != nil {
			return &NodeError{Node: s.spec.node.name, Err: fmt.Errorf("value: %w", err)}
		}
	}
	if s.limit > 0 {
		if n := recordSize(k, v, r.headers.h); n > s.limit {
			return &NodeError{Node: s.spec.node.name, Err: fmt.Errorf("%w: %d bytes (key %d, value %d) exceed max.message.bytes %d of topic %q",
				ErrRecordTooLarge, n, len(k), len(v), s.limit, s.spec.topic)}
		}
	}
	out := s.t.newRecord()
	*out = kgo.Record{Topic: s.spec.topic, Key: k, Value: v, Timestamp: r.ts, Headers: r.headers.kafka()}
	s.t.out = append(s.t.out, out)
	return nil
}

// ErrRecordTooLarge is wrapped by the error of a sink whose encoded record
// would exceed the topic's max.message.bytes. The record is routed through
// the error policy (to the DLQ by default) instead of being sent: a send
// the broker rejects would abort the whole transaction.
var ErrRecordTooLarge = errors.New("output record too large")

// recordSize is an upper bound of a record's size in a one-record batch of
// Kafka's v2 format: the batch header, the record's varint-framed fields
// at their widest, and its headers.
func recordSize(key, value []byte, headers []kgo.RecordHeader) int {
	const batchHeader, recordFraming, headerFraming = 61, 36, 10
	n := batchHeader + recordFraming + len(key) + len(value)
	for _, h := range headers {
		n += headerFraming + len(h.Key) + len(h.Value)
	}
	return n
}
