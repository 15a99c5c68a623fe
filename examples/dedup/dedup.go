// Package dedup drops repeated events: it copies each record of the input
// to the output unchanged (key, value, headers, timestamp) the first time
// its id is seen within a window of event time, and drops its repeats.
//
// Input values are JSON objects with an id field (default "event_id"), a
// string or a number; any key. Records whose value is not a JSON object,
// or lacks the id field, go to the DLQ `<app-id>-dlq`.
//
// Events are re-keyed by id through the repartition topic
// `<app-id>-events-by-id-repartition` (inside the transaction), so that
// every repeat of an id meets its first occurrence in one task, whatever
// the input's keys; the original key travels with the value and is
// restored before the output. State is bounded: ids older than stream
// time minus the window are forgotten (tombstones go to the changelog
// `<app-id>-event-ids-changelog`). A record older than stream time minus
// the window can no longer be checked: it passes and is counted
// (sluice_dedup_unchecked_total).
package dedup

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
)

// Event is an input value with the id found in it.
type Event struct {
	Raw []byte // the value as read
	ID  string // the id field's JSON text (a string's contents, or a number)
}

// EventSerde returns the serde of input values with the id in field: it
// decodes JSON objects that have it as a string or a number.
func EventSerde(field string) serde.Serde[Event] {
	return serde.Func("event("+field+")", func(e Event) ([]byte, error) { return e.Raw, nil }, func(b []byte) (Event, error) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
			return Event{}, errors.New("value is not a JSON object")
		}
		raw, ok := obj[field]
		if !ok {
			return Event{}, fmt.Errorf("missing %q", field)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return Event{Raw: b, ID: s}, nil
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			return Event{Raw: b, ID: n.String()}, nil
		}
		return Event{}, fmt.Errorf("%q must be a string or a number", field)
	})
}

// keyed is an event on its way through the repartition topic: its
// original key (nil stays nil) and value.
type keyed struct {
	Key, Value []byte
}

// keyedSerde encodes a keyed event as a flag byte (1: the key is null),
// the key's length (4 bytes), the key, then the value.
var keyedSerde = serde.Func("keyed-event", func(k keyed) ([]byte, error) {
	b := make([]byte, 0, 5+len(k.Key)+len(k.Value))
	if k.Key == nil {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(k.Key)))
	return append(append(b, k.Key...), k.Value...), nil
}, func(b []byte) (keyed, error) {
	if len(b) < 5 {
		return keyed{}, errors.New("dedup: keyed event too short")
	}
	n := int(binary.BigEndian.Uint32(b[1:5]))
	if len(b) < 5+n {
		return keyed{}, errors.New("dedup: keyed event's key cut short")
	}
	k := keyed{Key: bytes.Clone(b[5 : 5+n]), Value: bytes.Clone(b[5+n:])}
	if b[0] == 1 {
		k.Key = nil
	}
	return k, nil
})

// Build returns the dedup topology: input to output, an id seen once per
// window.
func Build(appID, input, output, idField string, window time.Duration) (*stream.Topology, error) {
	if idField == "" {
		return nil, errors.New("dedup: the id field must not be empty")
	}
	b := stream.NewBuilder(appID)
	stream.From(b, input, serde.Bytes, EventSerde(idField), stream.Named("events")).
		Map(func(k []byte, e Event) (string, keyed) { return e.ID, keyed{Key: k, Value: e.Raw} }, stream.Named("key-by-id")).
		Repartition("events-by-id", serde.String, keyedSerde).
		DedupByKey("event-ids", serde.String, window).
		Map(func(_ string, k keyed) ([]byte, []byte) { return k.Key, k.Value }, stream.Named("restore-key")).
		To(output, serde.Bytes, serde.Bytes, stream.Named("write-unique"))
	return b.Build()
}
