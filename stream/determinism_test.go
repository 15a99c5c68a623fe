package stream_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
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
