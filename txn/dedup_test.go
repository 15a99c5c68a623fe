package txn_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/txntest"
)

// dedupTopology drops repeated sequence numbers: each value
// (txntest.SeqValue) is re-keyed by its sequence number through a
// repartition topic, deduplicated by that key within an hour of event
// time, and written unchanged.
func dedupTopology(appID, input, output string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	stream.From(b, input, serde.Bytes, serde.Bytes).
		SelectKey(func(_, v []byte) string {
			seq, _ := txntest.ParseSeq(v)
			return fmt.Sprint(seq)
		}, stream.Named("key-by-seq")).
		Repartition("by-seq", serde.String, serde.Bytes).
		DedupByKey("seqs", serde.String, time.Hour).
		To(output, serde.String, serde.Bytes)
	return b.Build()
}

// Under repeated SIGKILLs of two dedup workers, with the CPU busy and input
// arriving all along, every sequence number comes out exactly once
// although a tenth of the input repeats earlier records (read back with
// large and with small fetches): no injected duplicate passes, none is
// lost to a replay, and the ids restored from the changelog after each
// kill still catch the repeats.
func TestDedupExactUnderRepeatedKills(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "dedupkills")
	f.cfg.topology = "dedup"
	w := map[string]*proc{"w1": f.start("w1", nil), "w2": f.start("w2", nil)}
	from := f.warmUp(w["w1"], w["w2"])
	// After each chunk, the chunk's first tenth again: repeats to drop.
	feed := startFeederWith(t, from, from+20_000, 200, 15*time.Millisecond, func(ctx context.Context, lo, hi int64) error {
		return errors.Join(txntest.Produce(ctx, f.brokers, "in", lo, hi, 1000, 100),
			txntest.Produce(ctx, f.brokers, "in", lo, lo+(hi-lo)/10, 997, 100))
	})
	f.killInTurn(w, 6, feed)
	n := feed.wait()
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	f.stopAll(w["w1"], w["w2"])
}
