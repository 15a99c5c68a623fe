package txntest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LogRecord is one committed record as a read_committed reader sees it:
// its key, value (nil for a tombstone) and timestamp in milliseconds. Its
// offset is left out: aborted transactions and their markers shift the
// offsets of what is committed after them.
type LogRecord struct {
	Key, Value  []byte
	TimestampMs int64
	Tombstone   bool
}

func (r LogRecord) String() string {
	v := fmt.Sprintf("%q", r.Value)
	if r.Tombstone {
		v = "tombstone"
	}
	return fmt.Sprintf("%q=%s@%d", r.Key, v, r.TimestampMs)
}

func (r LogRecord) equal(o LogRecord) bool {
	return bytes.Equal(r.Key, o.Key) && bytes.Equal(r.Value, o.Value) && r.TimestampMs == o.TimestampMs && r.Tombstone == o.Tombstone
}

// Log is the committed records of one topic, per partition, in offset
// order.
type Log map[int32][]LogRecord

// Len returns the number of records in all partitions.
func (l Log) Len() int {
	n := 0
	for _, rs := range l {
		n += len(rs)
	}
	return n
}

// Table returns the latest value of every key (a tombstone deletes it),
// as a compacted topic would keep it.
func (l Log) Table() map[string][]byte {
	t := map[string][]byte{}
	for _, p := range slices.Sorted(maps.Keys(l)) {
		for _, r := range l[p] {
			if r.Tombstone {
				delete(t, string(r.Key))
			} else {
				t[string(r.Key)] = r.Value
			}
		}
	}
	return t
}

// DiffLogs describes the first difference between a and b in each
// partition where they differ (a record that differs, or one only one of
// them has); "" when they are byte for byte the same.
func DiffLogs(a, b Log) string {
	parts := slices.Sorted(maps.Keys(a))
	for p := range b {
		if _, ok := a[p]; !ok {
			parts = append(parts, p)
		}
	}
	var sb bytes.Buffer
	for _, p := range parts {
		ra, rb := a[p], b[p]
		i := 0
		for i < len(ra) && i < len(rb) && ra[i].equal(rb[i]) {
			i++
		}
		switch {
		case i < len(ra) && i < len(rb):
			fmt.Fprintf(&sb, "partition %d, record %d: %s vs %s; ", p, i, ra[i], rb[i])
		case i < len(ra):
			fmt.Fprintf(&sb, "partition %d: %d records vs %d, the first missing %s; ", p, len(ra), len(rb), ra[i])
		case i < len(rb):
			fmt.Fprintf(&sb, "partition %d: %d records vs %d, the first extra %s; ", p, len(ra), len(rb), rb[i])
		}
	}
	return sb.String()
}

// ReadLog reads topic from the start with read_committed until it has
// seen at least n records and then a second has passed with nothing new
// (ReadCommittedWith), or ctx ends, and returns what it read. It reads
// with each of Readers at once and returns an error when they read
// different logs.
func ReadLog(ctx context.Context, brokers []string, topic string, n int) (Log, error) {
	logs, err := ReadEach(func(lim Limits) (Log, error) {
		l := Log{}
		seen := 0
		err := ReadCommittedWith(ctx, brokers, topic, lim, func(r *kgo.Record) {
			seen++
			l[r.Partition] = append(l[r.Partition], LogRecord{Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp.UnixMilli(), Tombstone: r.Value == nil})
		}, func() bool { return seen >= n })
		return l, err
	}, DiffLogs)
	if err != nil {
		return nil, err
	}
	return logs[0], nil
}
