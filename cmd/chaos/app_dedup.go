package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sluicehq/sluice/examples/dedup"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The dedup app's topics under chaos: its defaults.
const (
	dedupIn  = "events"
	dedupOut = "events-unique"
)

// dedupApp is the dedup example app under chaos: events to events-unique,
// by event_id, with its default window of an hour. Its input is that of
// cmd/runner's dedup demo: event seq keyed x<seq>, every 10th repeating
// the event_id of the one five before (under another key: a duplicate the
// app must drop), every 97th malformed.
type dedupApp struct{}

// newDedup returns the dedup app under chaos.
func newDedup() *dedupApp { return &dedupApp{} }

// name implements app.
func (*dedupApp) name() string { return "dedup" }

// topics implements app: events and events-unique, 8 partitions each.
func (*dedupApp) topics() []topicSpec {
	return []topicSpec{{name: dedupIn, partitions: 8}, {name: dedupOut, partitions: 8}}
}

// args implements app: dedup's defaults are the chaos topics.
func (a *dedupApp) args() []string { return []string{a.name()} }

// setup implements app: dedup needs nothing in place.
func (*dedupApp) setup(context.Context, *kgo.Client) error { return nil }

// dedupEventID returns the event_id number of event seq: its own, or, for
// every 10th event, that of the event five before it.
func dedupEventID(seq int64) int64 {
	if seq%10 == 9 {
		return seq - 5
	}
	return seq
}

// record implements app: key x<seq>, value
// {"event_id":"e<id>","seq":<seq>} (id: dedupEventID), or for every 97th
// a broken object ending in seq=<seq>. The timestamp is left to the
// producer (the wall clock), so every event is within the hour's window
// of every other.
func (*dedupApp) record(seq int64) *kgo.Record {
	v := fmt.Appendf(nil, `{"event_id":"e%d","seq":%d}`, dedupEventID(seq), seq)
	if malformedSeq(seq) {
		v = brokenJSON(fmt.Sprintf(`{"event_id":"e%d"`, dedupEventID(seq)), seq)
	}
	return &kgo.Record{Topic: dedupIn, Key: fmt.Appendf(nil, "x%d", seq), Value: v}
}

// finish implements app: nothing to close.
func (*dedupApp) finish(int64) []*kgo.Record { return nil }

// outputs implements app.
func (a *dedupApp) outputs() []string { return []string{dedupOut, topology.DLQTopic(a.name())} }

// verify implements app. From the input read back, decoded as the app
// decodes it (dedup.EventSerde): exactly one output record per distinct
// event_id of the valid events, each an unchanged copy (key, value,
// headers, timestamp) of one input event with that id; no other output;
// every malformed event in the DLQ (checkDLQ).
func (a *dedupApp) verify(ctx context.Context, brokers []string) (appReport, error) {
	rep := appReport{app: a.name(), counts: map[string]int64{}}
	events := dedup.EventSerde("event_id")
	in, err := readInput(ctx, brokers, dedupIn)
	if err != nil {
		return rep, err
	}
	rep.input = int64(len(in))
	byID := map[string][]*kgo.Record{}
	malformed := map[int64]bool{}
	for _, r := range in {
		e, err := events.Decode(r.Value)
		if err != nil {
			seq, ok := seqOf(r.Value)
			if !ok {
				return rep, fmt.Errorf("chaos: %s[%d]@%d: an input record the feeder did not write: %q", dedupIn, r.Partition, r.Offset, r.Value)
			}
			malformed[seq] = true
			continue
		}
		byID[e.ID] = append(byID[e.ID], r)
	}
	want := map[string]int{}
	for id := range byID {
		want[id] = 1
	}
	rep.expected = int64(len(want))

	out, err := readOutput(ctx, brokers, dedupOut)
	if err != nil {
		return rep, err
	}
	rep.counts[dedupOut] = int64(len(out))
	got := map[string]int{}
	for _, r := range out {
		e, err := events.Decode(r.Value)
		if err != nil || byID[e.ID] == nil {
			rep.mismatches++
			rep.note("%s[%d]@%d: a record that is no input event: %q", dedupOut, r.Partition, r.Offset, r.Value)
			continue
		}
		var diff string
		for _, sent := range byID[e.ID] {
			if diff = recordDiff(sent, r); diff == "" {
				break
			}
		}
		if diff != "" {
			rep.mismatches++
			rep.note("%s[%d]@%d: event_id %s is no unchanged copy of an input event with that id: %s", dedupOut, r.Partition, r.Offset, e.ID, diff)
			continue
		}
		got[e.ID]++
	}
	tally(&rep, dedupOut, want, got)
	if err := checkDLQ(ctx, brokers, &rep, malformed); err != nil {
		return rep, err
	}
	if err := checkDedupStore(ctx, brokers, &rep, byID); err != nil {
		return rep, err
	}
	return rep, nil
}

// dedupStore is the example dedup app's store (examples/dedup).
const dedupStore = "event-ids"

// segmentID is an entry of the dedup's store: its task's partition, its
// segment's end (milliseconds) and its id.
type segmentID struct {
	partition int32
	end       int64
	id        string
}

// replayDedupStore replays the dedup store's changelog as a restore does
// (state.Segmented): a packed record's writes in order, a packed
// tombstone removing its whole segment; a record without the packed
// header (the format before packs) writes one entry.
func replayDedupStore(log []*kgo.Record) (map[segmentID][]byte, error) {
	table := map[segmentID][]byte{}
	for _, r := range log { // one partition's records are in order
		if !slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == state.PackedHeader }) {
			end, id, err := state.SegmentedChangelogKey(r.Key)
			if err != nil {
				return table, fmt.Errorf("partition %d offset %d: %w", r.Partition, r.Offset, err)
			}
			k := segmentID{r.Partition, end.UnixMilli(), string(id)}
			if r.Value == nil {
				delete(table, k)
			} else {
				table[k] = r.Value
			}
			continue
		}
		end, _, writes, err := state.SegmentedChangelogEntries(r.Key, r.Value)
		if err != nil {
			return table, fmt.Errorf("partition %d offset %d: %w", r.Partition, r.Offset, err)
		}
		if r.Value == nil {
			maps.DeleteFunc(table, func(k segmentID, _ []byte) bool {
				return k.partition == r.Partition && k.end == end.UnixMilli()
			})
			continue
		}
		for _, w := range writes {
			k := segmentID{r.Partition, end.UnixMilli(), string(w.Key)}
			if w.Value == nil {
				delete(table, k)
			} else {
				table[k] = w.Value
			}
		}
	}
	return table, nil
}

// checkDedupStore checks the dedup's store, as its changelog restores it
// (replayDedupStore), against the input:
// each id it holds is an input event's, in one segment only, and it
// holds every id seen within the last span less two segments of the
// newest input's time (older ids may have expired).
func checkDedupStore(ctx context.Context, brokers []string, rep *appReport, byID map[string][]*kgo.Record) error {
	topic := topology.ChangelogTopic(rep.app, dedupStore)
	log, err := readOutput(ctx, brokers, topic)
	if err != nil {
		return err
	}
	rep.counts[topic] = int64(len(log))
	table, err := replayDedupStore(log)
	if err != nil {
		rep.mismatches++
		rep.note("%s: %v", topic, err)
	}
	segments := map[string]int{}
	for k := range table {
		if byID[k.id] == nil {
			rep.mismatches++
			rep.note("%s: the store holds id %q, which no input event has", topic, k.id)
			continue
		}
		if segments[k.id]++; segments[k.id] == 2 {
			rep.mismatches++
			rep.note("%s: the store holds id %q in two segments", topic, k.id)
		}
	}
	var newest time.Time
	for _, rs := range byID {
		for _, r := range rs {
			if r.Timestamp.After(newest) {
				newest = r.Timestamp
			}
		}
	}
	const span, segment = time.Hour, time.Hour / 10 // the app's default window, a tenth of it a segment
	for id, rs := range byID {
		first := rs[0].Timestamp
		for _, r := range rs[1:] {
			if r.Timestamp.Before(first) {
				first = r.Timestamp
			}
		}
		if first.After(newest.Add(-span+2*segment)) && segments[id] == 0 {
			rep.lost++
			rep.note("%s: id %q, first seen at %v, is not in the store", topic, id, first)
		}
	}
	return nil
}
