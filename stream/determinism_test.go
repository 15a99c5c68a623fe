package stream_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
)

// The time-based operators decide by event time and stream time only
// (DESIGN.md invariant 7): the same input gives byte-identical output
// whether the driver's wall clock stands still or races ahead by random
// steps between records. Input: out-of-order timestamps, repeated ids,
// late records, over a dedup and an emit-on-close windowed sum fed by it.
func TestTimeOperatorsIgnoreTheWallClock(t *testing.T) {
	run := func(race bool) []string {
		b := stream.NewBuilder("det")
		unique := stream.From(b, "events", serde.String, serde.Int64).
			DedupByKey("ids", serde.String, 30*time.Second)
		g := unique.SelectKey(func(id string, _ int64) string { return id[:1] }, stream.Named("by-group")).
			GroupByKey(serde.String, serde.Int64, stream.Named("groups"))
		stream.WindowedBy(g, window.Tumbling{Size: 10 * time.Second, Grace: 2 * time.Second}).
			Reduce("sums", func(a, v int64) int64 { return a + v }, stream.EmitOnClose()).
			ToStream().
			Map(func(k window.Keyed[string], v int64) (string, int64) { return k.Key + "@" + clock(k.Window.Start), v }).
			To("sums", serde.String, serde.Int64)
		topo, err := b.Build()
		require.NoError(t, err)
		d := streamtest.New(topo, streamtest.WithPartitions("events", 2), streamtest.WithWallClock(time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)))
		defer d.Close()
		in := streamtest.Input(d, "events", serde.String, serde.Int64)
		input := rand.New(rand.NewPCG(7, 7)) // the same input both times
		clockSteps := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for i := range 3000 {
			ts := sec(float64(i)/10 - float64(input.IntN(40))/10) // up to 4 s out of order
			if input.IntN(50) == 0 {
				ts = ts.Add(-time.Minute) // late, and too old to check
			}
			id := fmt.Sprintf("%c%d", 'a'+rune(input.IntN(3)), input.IntN(400))
			require.NoError(t, in.Pipe(id, int64(i), ts))
			if race {
				d.AdvanceWallClock(time.Duration(clockSteps.IntN(1000)) * time.Hour)
			}
		}
		recs, err := streamtest.Output(d, "sums", serde.String, serde.Int64).ReadAll()
		require.NoError(t, err)
		var out []string
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s=%d@%d", r.Key, r.Value, r.Timestamp.UnixMilli()))
		}
		s := d.Stats()
		return append(out, fmt.Sprintf("duplicates=%d unchecked=%d late=%d", s.Duplicates, s.Unchecked, s.Late))
	}
	frozen, racing := run(false), run(true)
	require.Greater(t, len(frozen), 50)
	t.Log(frozen[len(frozen)-1])
	require.NotContains(t, frozen[len(frozen)-1], "=0", "every kind of decision was taken")
	require.Equal(t, frozen, racing)
}

// determinismInput is the raw input of TestTopologiesIgnoreTheWallClock:
// n records on 4 partitions' worth of keys, with event times up to 3 s
// out of order, one in 40 a minute late, and one in 10 repeating an
// earlier key. value makes each record's value from its number and key.
func determinismInput(n int, value func(i int, key string) []byte) []streamtest.Record[[]byte, []byte] {
	rng := rand.New(rand.NewPCG(12, 12))
	recs := make([]streamtest.Record[[]byte, []byte], 0, n)
	for i := range n {
		ts := sec(float64(i)/20 - float64(rng.IntN(30))/10)
		if rng.IntN(40) == 0 {
			ts = ts.Add(-time.Minute)
		}
		key := fmt.Sprintf("c%d", rng.IntN(60))
		if rng.IntN(10) == 0 && i > 0 {
			key = string(recs[rng.IntN(len(recs))].Key)
		}
		recs = append(recs, streamtest.Record[[]byte, []byte]{Key: []byte(key), Value: value(i, key), Timestamp: ts})
	}
	return recs
}

// rawTopics returns every record the driver holds for topics, in order,
// as "topic[partition] key=value@ms" with key and value in hex (and
// "tombstone" for a null value): the bytes a broker would hold.
func rawTopics(t *testing.T, d *streamtest.Driver, topics ...string) []string {
	t.Helper()
	var out []string
	for _, topic := range topics {
		recs, err := streamtest.Output(d, topic, serde.Bytes, serde.Bytes).ReadAll()
		require.NoError(t, err)
		for _, r := range recs {
			v := fmt.Sprintf("%x", r.Value)
			if r.Deleted {
				v = "tombstone"
			}
			out = append(out, fmt.Sprintf("%s[%d] %x=%s@%d", topic, r.Partition, r.Key, v, r.Timestamp.UnixMilli()))
		}
	}
	return out
}

// The dedup, the emit-on-close windowed count and the revenue app each
// give byte-identical output and changelogs (keys, values, timestamps,
// partitions, order) whether the wall clock stands still or jumps an
// hour ahead before every record: nothing on their processing path reads
// the wall clock (DESIGN.md invariant 7). The input holds out-of-order,
// late and repeated records, so that every time-driven decision (a
// repeat dropped, an id forgotten, a window closed, a late record
// dropped) is taken.
func TestTopologiesIgnoreTheWallClock(t *testing.T) {
	order := func(i int, customer string) []byte {
		return fmt.Appendf(nil, `{"order_id":"o%d","customer_id":%q,"amount_cents":%d}`, i, customer, 100+i%17)
	}
	cases := []struct {
		name    string
		build   func() (*stream.Topology, error)
		value   func(i int, key string) []byte
		topics  []string // output, then changelogs
		decides func(topology.TaskStats) bool
	}{
		{"dedup", func() (*stream.Topology, error) {
			b := stream.NewBuilder("det")
			stream.From(b, "in", serde.String, serde.Bytes).
				DedupByKey("ids", serde.String, 5*time.Second).
				To("out", serde.String, serde.Bytes)
			return b.Build()
		}, order, []string{"out", "det-ids-changelog"},
			func(s topology.TaskStats) bool { return s.Duplicates > 0 && s.Unchecked > 0 }},
		{"windowed count", func() (*stream.Topology, error) {
			b := stream.NewBuilder("det")
			g := stream.From(b, "in", serde.String, serde.Bytes).GroupByKey(serde.String, serde.Bytes)
			stream.WindowedBy(g, window.Tumbling{Size: 5 * time.Second, Grace: time.Second}).
				Count("counts", stream.EmitOnClose()).
				ToStream().
				Map(func(k window.Keyed[string], n int64) (string, int64) { return k.Key + "@" + clock(k.Window.Start), n }).
				To("out", serde.String, serde.Int64)
			return b.Build()
		}, order, []string{"out", "det-counts-changelog"},
			func(s topology.TaskStats) bool { return s.Late > 0 }},
		{"revenue", func() (*stream.Topology, error) {
			return revenue.Build("det", "in", "out", 5*time.Second, time.Second)
		}, order, []string{"out", "det-revenue-changelog", "det-orders-by-customer-repartition"},
			func(s topology.TaskStats) bool { return s.Late > 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			input := determinismInput(3000, c.value)
			run := func(race bool) ([]string, topology.TaskStats) {
				topo, err := c.build()
				require.NoError(t, err)
				d := streamtest.New(topo, streamtest.WithPartitions("in", 4), streamtest.WithPartitions("out", 4))
				defer d.Close()
				for _, r := range input {
					require.NoError(t, d.PipeBytes("in", r.Key, r.Value, r.Timestamp))
					if race {
						d.AdvanceWallClock(time.Hour)
					}
				}
				return rawTopics(t, d, c.topics...), d.Stats()
			}
			frozen, frozenStats := run(false)
			racing, racingStats := run(true)
			t.Logf("%d records; %+v", len(frozen), frozenStats)
			require.True(t, c.decides(frozenStats), "every kind of decision was taken: %+v", frozenStats)
			for _, topic := range c.topics {
				require.True(t, slices.ContainsFunc(frozen, func(s string) bool { return strings.HasPrefix(s, topic+"[") }), "nothing in %s", topic)
			}
			require.Equal(t, frozenStats, racingStats)
			require.Equal(t, frozen, racing)
		})
	}
}
