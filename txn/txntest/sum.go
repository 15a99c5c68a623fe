package txntest

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadTable reads a changelog topic from the start with read_committed
// (ReadCommittedWith) up to its read_committed end, listed when it starts,
// and until it has been quiet for a second, and returns the latest value of
// every key (tombstones delete), each an 8-byte big-endian int64 (Kafka's
// LongSerializer, sluice's serde.Int64). Like Verify, it reads
// with each of Readers at once and returns an error when they differ.
func ReadTable(ctx context.Context, brokers []string, topic string) (map[string]int64, error) {
	tables, err := ReadEach(func(lim Limits) (map[string]int64, error) { return readTable(ctx, brokers, topic, lim) }, DiffMaps)
	if err != nil {
		return nil, err
	}
	return tables[0], nil
}

func readTable(ctx context.Context, brokers []string, topic string, lim Limits) (map[string]int64, error) {
	table := map[string]int64{}
	var derr error
	err := ReadCommittedWith(ctx, brokers, topic, lim, func(r *kgo.Record) {
		if r.Value == nil {
			delete(table, string(r.Key))
			return
		}
		if len(r.Value) != 8 {
			if derr == nil {
				derr = fmt.Errorf("txntest: %s[%d]@%d: a %d-byte value is not an int64", r.Topic, r.Partition, r.Offset, len(r.Value))
			}
			return
		}
		table[string(r.Key)] = int64(binary.BigEndian.Uint64(r.Value))
	}, func() bool { return true })
	if err != nil {
		return nil, err
	}
	return table, derr
}
