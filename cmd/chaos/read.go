package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readInput reads topic from the start up to its read_committed end (the
// input is written without transactions: all of it) with large fetches,
// in partition and offset order within each partition.
func readInput(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	return readWith(ctx, brokers, topic, txntest.LargeFetches)
}

// readOutput reads topic as readInput does, once with large fetches and
// once with fetches so small that the broker cuts every response, at the
// same time, and fails unless both read the same records.
func readOutput(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	got, err := txntest.ReadEach(func(lim txntest.Limits) ([]*kgo.Record, error) {
		return readWith(ctx, brokers, topic, lim)
	}, diffRecords)
	if err != nil {
		return nil, fmt.Errorf("chaos: read %s: %w", topic, err)
	}
	return got[0], nil
}

func readWith(ctx context.Context, brokers []string, topic string, lim txntest.Limits) ([]*kgo.Record, error) {
	var rs []*kgo.Record
	err := txntest.ReadCommittedWith(ctx, brokers, topic, lim, func(r *kgo.Record) { rs = append(rs, r) }, func() bool { return true })
	return rs, err
}

// diffRecords says how two reads of one topic differ: "" when they hold
// the same records at the same offsets.
func diffRecords(a, b []*kgo.Record) string {
	type at struct {
		p int32
		o int64
	}
	index := func(rs []*kgo.Record) map[at]*kgo.Record {
		m := make(map[at]*kgo.Record, len(rs))
		for _, r := range rs {
			m[at{r.Partition, r.Offset}] = r
		}
		return m
	}
	ia, ib := index(a), index(b)
	if len(ia) != len(ib) {
		return fmt.Sprintf("%d records vs %d", len(ia), len(ib))
	}
	for k, ra := range ia {
		rb := ib[k]
		if rb == nil || !bytes.Equal(ra.Key, rb.Key) || !bytes.Equal(ra.Value, rb.Value) {
			return fmt.Sprintf("partition %d offset %d differs", k.p, k.o)
		}
	}
	return ""
}

// seqOf returns the sequence number that a malformed record of the chaos
// input ends with ("... seq=<n>").
func seqOf(value []byte) (int64, bool) {
	_, after, ok := strings.Cut(string(value), "seq=")
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseInt(after, 10, 64)
	return seq, err == nil
}

// dlqHeaders are the headers every dead letter carries (CONTRACT.md).
var dlqHeaders = []string{stream.HeaderError, stream.HeaderTopic, stream.HeaderPartition, stream.HeaderOffset}

// checkDLQ checks app's dead letters against malformed, the sequence
// numbers of the malformed input records read back: each must be in the
// DLQ exactly once, with every header of dlqHeaders, and nothing else.
// It counts into rep (expected, counts, duplicates, lost, mismatches).
func checkDLQ(ctx context.Context, brokers []string, rep *appReport, malformed map[int64]bool) error {
	topic := topology.DLQTopic(rep.app)
	dlq, err := readOutput(ctx, brokers, topic)
	if err != nil {
		return err
	}
	if rep.counts == nil {
		rep.counts = map[string]int64{}
	}
	rep.counts[topic] = int64(len(dlq))
	rep.expected += int64(len(malformed))
	seen := map[int64]int{}
	for _, r := range dlq {
		seq, ok := seqOf(r.Value)
		if !ok || !malformed[seq] {
			rep.mismatches++
			rep.note("%s[%d]@%d: a dead letter that is no malformed input: %q", topic, r.Partition, r.Offset, r.Value)
			continue
		}
		for _, h := range dlqHeaders {
			if !hasHeader(r, h) {
				rep.mismatches++
				rep.note("%s[%d]@%d: dead letter of seq %d without header %s", topic, r.Partition, r.Offset, seq, h)
				break
			}
		}
		if seen[seq]++; seen[seq] > 1 {
			rep.duplicates++
			rep.note("%s[%d]@%d: seq %d dead-lettered again", topic, r.Partition, r.Offset, seq)
		}
	}
	for seq := range malformed {
		if seen[seq] == 0 {
			rep.lost++
			rep.note("%s: malformed seq %d is not in the DLQ", topic, seq)
		}
	}
	return nil
}

func hasHeader(r *kgo.Record, key string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}
