package txntest

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Amount is the amount the sum topology adds for sequence number seq.
func Amount(seq int64) int64 { return seq%10 + 1 }

// summer adds Amount(seq) to its key's running sum in a store, and emits
// "<seq, 12 digits> <sum>": the output stays a sequence value for Verify.
type summer struct {
	sums *stream.KeyValueStore[string, int64]
}

func (s summer) Process(ctx stream.Context, rec stream.Record[string, []byte], out stream.Emitter[string, []byte]) error {
	seq, err := ParseSeq(rec.Value())
	if err != nil {
		return err
	}
	kv := s.sums.In(ctx)
	sum, _, err := kv.Get(rec.Key())
	if err != nil {
		return err
	}
	sum += Amount(seq)
	if err := kv.Put(rec.Key(), sum); err != nil {
		return err
	}
	return out.Emit(rec.WithValue(fmt.Appendf(nil, "%0*d %d", seqDigits, seq, sum)))
}

// SumTopology is the seed article's `revenue += amount` trap as a
// topology: a running sum per key in a store named "sums", changelogged to
// `<appID>-sums-changelog`. Exactly once holds only if every input record
// is added exactly once, across crashes and restores.
func SumTopology(appID, input, output string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	sums := stream.NewKeyValueStore(b, "sums", serde.String, serde.Int64)
	stream.From(b, input, serde.String, serde.Bytes).
		Process(func() summer { return summer{sums: sums} }, stream.Named("sum"), stream.WithStores(sums)).
		To(output, serde.String, serde.Bytes)
	return b.Build()
}

// ExpectedSums recomputes the sums of SumTopology for sequence numbers
// [0, n) produced by Produce with keys keys.
func ExpectedSums(n, keys int64) map[string]int64 {
	want := map[string]int64{}
	for seq := range n {
		k := seq
		if keys > 0 {
			k = seq % keys
		}
		want["k"+strconv.FormatInt(k, 10)] += Amount(seq)
	}
	return want
}

// ReadTable reads a changelog topic from the start with read_committed
// until it has been quiet for a second, and returns the latest value of
// every key (tombstones delete), decoded as Int64. Like Verify, it reads
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
		v, err := serde.Int64.Decode(r.Value)
		if err != nil && derr == nil {
			derr = fmt.Errorf("txntest: %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		table[string(r.Key)] = v
	}, func() bool { return true })
	if err != nil {
		return nil, err
	}
	return table, derr
}
