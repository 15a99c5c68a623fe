package txn_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/window"
)

// wcountTopology counts the records of each key in tumbling one-second
// windows and emits each window once, when it closes, as
// "key@start-ms" -> count.
func wcountTopology(appID, input, output string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	g := stream.From(b, input, serde.String, serde.Bytes).GroupByKey(serde.String, serde.Bytes)
	stream.WindowedBy(g, window.Tumbling{Size: time.Second}).
		Count("wcounts", stream.EmitOnClose()).
		ToStream().
		Map(func(k window.Keyed[string], n int64) (string, int64) {
			return k.Key + "@" + strconv.FormatInt(k.Window.Start.UnixMilli(), 10), n
		}).
		To(output, serde.String, serde.Int64)
	return b.Build()
}

// Windowed keys and times: record seq has key k<seq mod 100> and event
// time wcountBase plus seq ms, so each one-second window holds 10 records
// of each key.
const wcountKeys = 100

var wcountBase = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func wcountRecord(seq int64) *kgo.Record {
	return &kgo.Record{Topic: "in", Key: []byte("k" + strconv.FormatInt(seq%wcountKeys, 10)),
		Value: txntest.SeqValue(seq, 100), Timestamp: wcountBase.Add(time.Duration(seq) * time.Millisecond)}
}

// Under repeated SIGKILLs of two workers of an emit-on-close windowed
// count, with the CPU busy and input arriving all along, every window of
// every key comes out exactly once with its exact count (read back with
// large and with small fetches): the window store restored after each
// kill holds exactly the committed counts, and no window is emitted by
// both an aborted and a committed transaction.
func TestWindowedCountExactUnderRepeatedKills(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "wkills")
	f.cfg.topology = "wcount"
	w := map[string]*proc{"w1": f.start("w1", nil), "w2": f.start("w2", nil)}
	const n = 20_000
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The input arrives in chunks, one per tick, while workers die.
	feed := startFeederWith(t, 0, n, 100, 20*time.Millisecond, func(ctx context.Context, lo, hi int64) error {
		for seq := lo; seq < hi; seq++ {
			cl.Produce(ctx, wcountRecord(seq), nil)
		}
		return cl.Flush(ctx)
	})
	f.killInTurn(w, 6, feed)
	feed.wait()
	// A record of every key a minute later closes every window.
	closing := wcountBase.Add(n*time.Millisecond + time.Minute)
	for k := range int64(wcountKeys) {
		r := wcountRecord(k)
		r.Timestamp = closing
		cl.Produce(ctx, r, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	windows := int64(n / 1000)
	read := func(lim txntest.Limits) (map[string][]int64, error) {
		got := map[string][]int64{}
		var count int64
		err := txntest.ReadCommittedWith(ctx, f.brokers, "out", lim, func(r *kgo.Record) {
			count++
			v := int64(-1)
			if len(r.Value) == 8 {
				v = int64(binary.BigEndian.Uint64(r.Value))
			}
			got[string(r.Key)] = append(got[string(r.Key)], v)
		}, func() bool { return count >= windows*wcountKeys })
		return got, err
	}
	results, err := txntest.ReadEach(read, func(a, b map[string][]int64) string {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return fmt.Sprintf("%d windows vs %d", len(a), len(b))
		}
		return ""
	})
	require.NoError(t, err)
	got := results[0]
	for k := range int64(wcountKeys) {
		for wi := range windows {
			key := fmt.Sprintf("k%d@%d", k, wcountBase.Add(time.Duration(wi)*time.Second).UnixMilli())
			require.Equal(t, []int64{10}, got[key], "%s: once, with its 10 records", key)
		}
	}
	require.Len(t, got, int(windows*wcountKeys), "no other window")
	f.stopAll(w["w1"], w["w2"])
}
