package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// malformedSeq reports whether input record seq of dedup, enrich and
// revenue is written malformed (as the runner demos do: every 97th), so
// that the app must dead-letter it.
func malformedSeq(seq int64) bool { return seq%97 == 96 }

// brokenJSON returns the malformed value of input record seq: the start of
// a JSON object (head, e.g. `{"order_id":"o5"`) cut off by text that is no
// JSON, ending in "seq=<n>" so that seqOf finds seq in the dead letter.
func brokenJSON(head string, seq int64) []byte {
	return fmt.Appendf(nil, `%s, broken seq=%d`, head, seq)
}

// recordDiff describes how the output record got differs from the input
// record want in its key, value, headers or timestamp: "" when it is an
// unchanged copy (CONTRACT.md: passthrough and dedup copy all four).
func recordDiff(want, got *kgo.Record) string {
	switch {
	case !bytes.Equal(want.Key, got.Key) || (want.Key == nil) != (got.Key == nil):
		return fmt.Sprintf("key %q, want %q", got.Key, want.Key)
	case !bytes.Equal(want.Value, got.Value) || (want.Value == nil) != (got.Value == nil):
		return fmt.Sprintf("value %q, want %q", got.Value, want.Value)
	case !want.Timestamp.Equal(got.Timestamp):
		return fmt.Sprintf("timestamp %s, want %s", got.Timestamp.UTC().Format(timeMillis), want.Timestamp.UTC().Format(timeMillis))
	case !sameHeaders(want.Headers, got.Headers):
		return fmt.Sprintf("headers %s, want %s", showHeaders(got.Headers), showHeaders(want.Headers))
	}
	return ""
}

// timeMillis formats timestamps in violation examples.
const timeMillis = "2006-01-02T15:04:05.000Z07:00"

// sameHeaders reports whether a and b are the same headers in the same
// order (an empty header value equals a null one: Kafka's wire format
// tells them apart, but franz-go reads both back as empty).
func sameHeaders(a, b []kgo.RecordHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// showHeaders formats headers for a violation example.
func showHeaders(hs []kgo.RecordHeader) string {
	var sb bytes.Buffer
	sb.WriteByte('[')
	for i, h := range hs {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%s=%q", h.Key, h.Value)
	}
	sb.WriteByte(']')
	return sb.String()
}

// tally counts into rep how the output records found per key (got) fall
// short of or exceed those expected (want): a key found fewer times than
// expected has lost records, one found more often duplicates. Records
// found for keys never expected are the caller's mismatches, not counted
// in got.
func tally[K cmp.Ordered](rep *appReport, topic string, want, got map[K]int) {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		switch w, g := want[k], got[k]; {
		case g < w:
			rep.lost += int64(w - g)
			rep.note("%s: %v expected %d times, found %d", topic, k, w, g)
		case g > w:
			rep.duplicates += int64(g - w)
			rep.note("%s: %v expected %d times, found %d", topic, k, w, g)
		}
	}
}

// inPartitionOrder returns rs by partition, each partition's records in
// offset order: the order a task reads them in.
func inPartitionOrder(rs []*kgo.Record) map[int32][]*kgo.Record {
	parts := map[int32][]*kgo.Record{}
	for _, r := range rs {
		parts[r.Partition] = append(parts[r.Partition], r)
	}
	for _, p := range parts {
		slices.SortStableFunc(p, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	return parts
}

// partitionsInOrder returns the partitions of parts in ascending order,
// so that a check walks them, and notes its findings, deterministically.
func partitionsInOrder(parts map[int32][]*kgo.Record) []int32 {
	return slices.Sorted(maps.Keys(parts))
}

// produceAll writes rs and waits until the broker acknowledged every one.
func produceAll(ctx context.Context, cl *kgo.Client, rs []*kgo.Record) error {
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		return fmt.Errorf("chaos: produce: %w", err)
	}
	return nil
}
