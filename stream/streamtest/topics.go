package streamtest

import (
	"fmt"
	"iter"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// InputTopic pipes typed records into one topic of a Driver.
type InputTopic[K, V any] struct {
	d     *Driver
	topic string
	ks    serde.Serde[K]
	vs    serde.Serde[V]
}

// Input returns a typed handle to pipe records into topic.
func Input[K, V any](d *Driver, topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V]) *InputTopic[K, V] {
	return &InputTopic[K, V]{d: d, topic: topic, ks: keySerde, vs: valueSerde}
}

// Pipe encodes key and value and processes the record with timestamp ts,
// and everything it causes, before returning. The error is an encoding
// error, or the task's error under stream.OnErrorFail.
func (in *InputTopic[K, V]) Pipe(key K, value V, ts time.Time) error {
	return in.PipeRecord(stream.NewRecord(key, value, ts))
}

// PipeRecord is Pipe for a record with headers, or for a tombstone
// (stream.Tombstone: a null value).
func (in *InputTopic[K, V]) PipeRecord(r stream.Record[K, V]) error {
	k, err := in.ks.Encode(r.Key())
	if err != nil {
		return err
	}
	var v []byte
	if !r.Deleted() {
		if v, err = in.vs.Encode(r.Value()); err != nil {
			return err
		}
	}
	var hs []kgo.RecordHeader
	for hk, hv := range r.Headers().All() {
		hs = append(hs, kgo.RecordHeader{Key: hk, Value: hv})
	}
	return in.d.pipe(in.topic, k, v, r.Timestamp(), hs)
}

// Record is an output record as a test reads it.
type Record[K, V any] struct {
	Key       K
	Value     V
	Timestamp time.Time
	Headers   []Header // nil when there are none
	Partition int32
	Offset    int64
	// Deleted is true for a tombstone: a record with a null value (Value
	// is then the zero value).
	Deleted bool
}

// Header is one Kafka header, with its value as a string for easy asserts.
type Header struct {
	Key, Value string
}

// Header returns the value of the last header named key, or "".
func (r Record[K, V]) Header(key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return r.Headers[i].Value
		}
	}
	return ""
}

// OutputTopic reads typed records from one topic of a Driver.
type OutputTopic[K, V any] struct {
	d     *Driver
	topic string
	ks    serde.Serde[K]
	vs    serde.Serde[V]
}

// Output returns a typed handle to read what the topology wrote to topic.
func Output[K, V any](d *Driver, topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V]) *OutputTopic[K, V] {
	return &OutputTopic[K, V]{d: d, topic: topic, ks: keySerde, vs: valueSerde}
}

// DLQ returns the application's dead-letter topic, `<app-id>-dlq`.
func (d *Driver) DLQ() *OutputTopic[[]byte, []byte] {
	return Output(d, topology.DLQTopic(d.topo.AppID()), serde.Bytes, serde.Bytes)
}

// ReadAll returns, in the order they were written, the records written to
// the topic since the last read, and consumes them: handles to the same
// topic share one read position. On a record that does not decode it
// returns the records before it and the error, and leaves that record
// unread.
func (o *OutputTopic[K, V]) ReadAll() ([]Record[K, V], error) {
	out := make([]Record[K, V], 0, o.Len())
	for r, err := range o.Read() {
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Read iterates over the unread records of the topic, consuming each one
// as it is yielded; breaking out of the loop leaves the rest unread. On a
// record that does not decode it yields the error and stops, leaving that
// record unread. It allocates nothing beyond what the serdes do.
func (o *OutputTopic[K, V]) Read() iter.Seq2[Record[K, V], error] {
	return func(yield func(Record[K, V], error) bool) {
		q := o.d.topic(o.topic)
		n := 0
		defer func() {
			// Drop the consumed prefix, keeping the backing array.
			rest := copy(q.unread, q.unread[n:])
			clear(q.unread[rest:])
			q.unread = q.unread[:rest]
		}()
		for _, r := range q.unread {
			rec, err := o.decode(r)
			if err != nil {
				yield(rec, err)
				return
			}
			n++
			if !yield(rec, nil) {
				return
			}
		}
	}
}

func (o *OutputTopic[K, V]) decode(r *kgo.Record) (Record[K, V], error) {
	rec := Record[K, V]{Timestamp: r.Timestamp, Partition: r.Partition, Offset: r.Offset}
	var err error
	if rec.Key, err = o.ks.Decode(r.Key); err != nil {
		return rec, fmt.Errorf("streamtest: %s[%d]@%d key: %w", o.topic, r.Partition, r.Offset, err)
	}
	if r.Value == nil {
		rec.Deleted = true
	} else if rec.Value, err = o.vs.Decode(r.Value); err != nil {
		return rec, fmt.Errorf("streamtest: %s[%d]@%d value: %w", o.topic, r.Partition, r.Offset, err)
	}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, Header{Key: h.Key, Value: string(h.Value)})
	}
	return rec, nil
}

// Len returns how many records are waiting to be read.
func (o *OutputTopic[K, V]) Len() int {
	return len(o.d.topic(o.topic).unread)
}
