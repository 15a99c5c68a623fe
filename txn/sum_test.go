package txn_test

import (
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/txntest"
)

// The stateful topology of the exactly-once tests, here so that test
// support (txntest) stays clear of the DSL.

// amount is the amount the sum topology adds for sequence number seq.
func amount(seq int64) int64 { return seq%10 + 1 }

// summer adds amount(seq) to its key's running sum in a store, and emits
// "<seq> <sum>" (seq as txntest.SeqValue writes it): the output stays a
// sequence value for Verify.
type summer struct {
	sums *stream.KeyValueStore[string, int64]
	// before, if set, is called before each record.
	before func()
}

func (s summer) Process(ctx stream.ProcessorContext, rec stream.Record[string, []byte], out stream.Emitter[string, []byte]) error {
	if s.before != nil {
		s.before()
	}
	seq, err := txntest.ParseSeq(rec.Value())
	if err != nil {
		return err
	}
	kv := s.sums.In(ctx)
	sum, _, err := kv.Get(rec.Key())
	if err != nil {
		return err
	}
	sum += amount(seq)
	if err := kv.Put(rec.Key(), sum); err != nil {
		return err
	}
	return out.Emit(rec.WithValue(fmt.Appendf(txntest.SeqValue(seq, 0), " %d", sum)))
}

// sumTopology is the seed article's `revenue += amount` trap as a
// topology: a running sum per key in a store named "sums", changelogged to
// `<appID>-sums-changelog`. Exactly once holds only if every input record
// is added exactly once, across crashes and restores.
func sumTopology(appID, input, output string) (*stream.Topology, error) {
	return gatedSumTopology(appID, input, output, nil)
}

// gatedSumTopology is sumTopology whose processor calls before, if set,
// before each record.
func gatedSumTopology(appID, input, output string, before func()) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	sums := stream.NewKeyValueStore(b, "sums", serde.String, serde.Int64)
	stream.From(b, input, serde.String, serde.Bytes).
		Process(func() summer { return summer{sums: sums, before: before} }, stream.Named("sum"), stream.WithStores(sums)).
		To(output, serde.String, serde.Bytes)
	return b.Build()
}

// expectedSums recomputes the sums of sumTopology for sequence numbers
// [0, n) produced by txntest.Produce with keys keys.
func expectedSums(n, keys int64) map[string]int64 {
	want := map[string]int64{}
	for seq := range n {
		k := seq
		if keys > 0 {
			k = seq % keys
		}
		want["k"+strconv.FormatInt(k, 10)] += amount(seq)
	}
	return want
}
