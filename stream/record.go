package stream

import (
	"iter"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one typed record flowing through a topology. It is immutable:
// the With methods return modified copies, and Headers can only be read.
// Pass it by value.
type Record[K, V any] struct {
	key     K
	value   V
	ts      time.Time
	headers Headers
	origin  Origin
	// deleted marks a table delete (a tombstone): value is the zero value.
	deleted bool
}

// NewRecord returns a record with no headers and no origin. Processors build
// new records with it or, keeping headers and origin, with the With methods.
func NewRecord[K, V any](key K, value V, ts time.Time) Record[K, V] {
	return Record[K, V]{key: key, value: value, ts: ts}
}

// Tombstone returns a record that deletes key: a table's delete, forwarded
// by table operators and by Table.ToStream, and written by a sink as a
// record with a null value.
func Tombstone[K, V any](key K, ts time.Time) Record[K, V] {
	return Record[K, V]{key: key, ts: ts, deleted: true}
}

// Deleted reports whether r is a tombstone (see Tombstone): a delete of its
// key, whose Value is the zero value.
func (r Record[K, V]) Deleted() bool { return r.deleted }

// Key returns the record's key.
func (r Record[K, V]) Key() K { return r.key }

// Value returns the record's value.
func (r Record[K, V]) Value() V { return r.value }

// Timestamp returns the record's event time (the Kafka record timestamp).
func (r Record[K, V]) Timestamp() time.Time { return r.ts }

// Headers returns the record's headers.
func (r Record[K, V]) Headers() Headers { return r.headers }

// Origin returns where the source record of this record was read from. It is
// the zero Origin for records made with NewRecord outside a topology.
func (r Record[K, V]) Origin() Origin { return r.origin }

// WithKey returns a copy of r with key k, of any type (a tombstone stays
// one).
func (r Record[K, V]) WithKey[K2 any](k K2) Record[K2, V] {
	return Record[K2, V]{key: k, value: r.value, ts: r.ts, headers: r.headers, origin: r.origin, deleted: r.deleted}
}

// WithValue returns a copy of r with value v, of any type: a record with a
// value, never a tombstone.
func (r Record[K, V]) WithValue[V2 any](v V2) Record[K, V2] {
	return Record[K, V2]{key: r.key, value: v, ts: r.ts, headers: r.headers, origin: r.origin}
}

// WithTimestamp returns a copy of r with timestamp ts.
func (r Record[K, V]) WithTimestamp(ts time.Time) Record[K, V] {
	r.ts = ts
	return r
}

// WithHeader returns a copy of r with one more header. Existing headers of
// the same key are kept (Kafka headers are a list); Headers.Get returns the
// last one.
func (r Record[K, V]) WithHeader(key string, value []byte) Record[K, V] {
	h := make([]kgo.RecordHeader, len(r.headers.h), len(r.headers.h)+1)
	copy(h, r.headers.h)
	r.headers = Headers{h: append(h, kgo.RecordHeader{Key: key, Value: value})}
	return r
}

// Origin is the topic, partition and offset a record was read from.
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Headers are a record's Kafka headers, read-only. The zero value is empty.
type Headers struct{ h []kgo.RecordHeader }

// Len returns the number of headers.
func (h Headers) Len() int { return len(h.h) }

// Get returns the value of the last header named key.
func (h Headers) Get(key string) ([]byte, bool) {
	for i := len(h.h) - 1; i >= 0; i-- {
		if h.h[i].Key == key {
			return h.h[i].Value, true
		}
	}
	return nil, false
}

// All iterates over the headers in order. The values must not be modified.
func (h Headers) All() iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for _, e := range h.h {
			if !yield(e.Key, e.Value) {
				return
			}
		}
	}
}

// kafka returns the headers for an outgoing Kafka record. The slice is
// shared, never appended to in place (WithHeader copies), so aliasing is safe.
func (h Headers) kafka() []kgo.RecordHeader { return h.h }

func withExtra(h []kgo.RecordHeader, extra ...kgo.RecordHeader) []kgo.RecordHeader {
	return append(slices.Clip(h), extra...)
}

// Pair is one key and value, as returned by FlatMap functions.
type Pair[K, V any] struct {
	Key   K
	Value V
}

// KV returns a Pair.
func KV[K, V any](k K, v V) Pair[K, V] { return Pair[K, V]{Key: k, Value: v} }
