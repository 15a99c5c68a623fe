package stream_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/window"
)

// A session is [first, last+1ms). A record within the gap of a session
// (exactly the gap included) joins it; one that bridges two sessions
// merges them. Every change of a session's window forwards a tombstone
// for the old window before the new aggregate; a record inside a session
// just updates it.
func TestSessionCountMergesAndForwardsDeletes(t *testing.T) {
	d, pipe, read := spanCounts(t, window.Session{Gap: 10 * time.Second, Grace: time.Minute})
	pipe("a", 0)
	require.Equal(t, []string{"a[0,0.001)=1"}, read())
	pipe("a", 5)
	require.Equal(t, []string{"a[0,0.001) deleted", "a[0,5.001)=2"}, read())
	pipe("a", 15.001) // 10.001s after 5: a new session
	require.Equal(t, []string{"a[15.001,15.002)=1"}, read())
	pipe("b", 10) // keys are independent
	require.Equal(t, []string{"b[10,10.001)=1"}, read())
	pipe("a", 10) // within 10s of both: merges them
	require.Equal(t, []string{"a[0,5.001) deleted", "a[15.001,15.002) deleted", "a[0,15.002)=4"}, read())
	pipe("a", 12) // inside the session
	require.Equal(t, []string{"a[0,15.002)=5"}, read())
	pipe("a", 25.001) // exactly the gap after the last record
	require.Equal(t, []string{"a[0,15.002) deleted", "a[0,25.002)=6"}, read())
	pipe("a", -10) // exactly the gap before the first record, out of order
	require.Equal(t, []string{"a[0,25.002) deleted", "a[-10,25.002)=7"}, read())
	require.Zero(t, d.Stats().Late)
}

// With EmitOnClose a session emits once, its final count, when stream time
// reaches its end plus the gap plus the grace (no record joining it can
// come any more); sessions merged away are never emitted. A record whose
// session would end before stream time minus the grace is late: dropped
// and counted.
func TestSessionCountEmitsOnClose(t *testing.T) {
	d, pipe, read := spanCounts(t, window.Session{Gap: 10 * time.Second, Grace: 5 * time.Second}, stream.EmitOnClose())
	pipe("a", 10)
	pipe("a", 25) // a second session: [10] closes at 10.001+10+5
	pipe("a", 16) // bridges them
	pipe("b", 40)
	require.Empty(t, read())
	pipe("b", 40.001) // stream time 40.001: [10, 25.001) closes
	require.Equal(t, []string{"a[10,25.001)=3"}, read())
	pipe("a", 30) // would start [30, 30.001): ends 5s+ before stream time
	require.Equal(t, int64(1), d.Stats().Late)
	pipe("a", 36) // within the grace: a session of its own (the last one closed)
	require.Zero(t, len(read()))
	require.Equal(t, int64(1), d.Stats().Late)
	pipe("z", 100)
	require.Equal(t, []string{"a[36,36.001)=1", "b[40,40.002)=2"}, read(), "each session once, in the order they close")
	pipe("z", 200)
	require.Equal(t, []string{"z[100,100.001)=1"}, read())
}

// Aggregate merges the aggregates of the sessions a record bridges,
// earliest first, then adds the record; Reduce merges with its reducer.
func TestSessionAggregateAndReduce(t *testing.T) {
	b := stream.NewBuilder("sa")
	g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
	sessions := stream.SessionWindowedBy(g, window.Session{Gap: 10 * time.Second, Grace: time.Minute})
	sessions.Aggregate("joined", func() string { return "<" },
		func(_, v, agg string) string { return agg + v },
		func(_, a, b string) string { return a + "|" + b },
		serde.String).
		ToStream().SelectKey(func(k window.Keyed[string], _ string) string { return span(k) }).
		To("joined", serde.String, serde.String)
	sessions.Reduce("max", func(agg, v string) string { return max(agg, v) }).
		ToStream().SelectKey(func(k window.Keyed[string], _ string) string { return span(k) }).
		To("max", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "in", serde.String, serde.String)
	require.NoError(t, in.Pipe("a", "x", sec(0)))
	require.NoError(t, in.Pipe("a", "z", sec(20)))
	require.NoError(t, in.Pipe("a", "y", sec(10)))
	last := func(topic string) string {
		recs, err := streamtest.Output(d, topic, serde.String, serde.String).ReadAll()
		require.NoError(t, err)
		r := recs[len(recs)-1]
		return r.Key + "=" + r.Value
	}
	require.Equal(t, "a[0,20.001)=<x|<zy", last("joined"))
	require.Equal(t, "a[0,20.001)=z", last("max"))
}

// Session windows are built with SessionWindowedBy, not WindowedBy; they
// need a positive gap, a name and a merger.
func TestSessionValidation(t *testing.T) {
	build := func(f func(g stream.Grouped[string, string])) error {
		b := stream.NewBuilder("v")
		f(stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String))
		_, err := b.Build()
		return err
	}
	require.ErrorContains(t, build(func(g stream.Grouped[string, string]) {
		stream.WindowedBy(g, window.Session{Gap: time.Second}).Count("c")
	}), "window.Session windows merge: aggregate them with stream.SessionWindowedBy")
	require.ErrorContains(t, build(func(g stream.Grouped[string, string]) {
		stream.SessionWindowedBy(g, window.Session{}).Count("c")
	}), "session gap must be positive")
	require.ErrorContains(t, build(func(g stream.Grouped[string, string]) {
		stream.SessionWindowedBy(g, window.Session{Gap: time.Second}).Count("")
	}), "session-count needs a name")
	require.ErrorContains(t, build(func(g stream.Grouped[string, string]) {
		stream.SessionWindowedBy(g, window.Session{Gap: time.Second}).
			Aggregate("c", func() int64 { return 0 }, func(_, _ string, n int64) int64 { return n + 1 }, nil, serde.Int64)
	}), "init, add and merge must not be nil")
}

// For records in any order (none late), the sessions are the runs of the
// sorted timestamps whose neighbours are at most the gap apart: with
// EmitOnClose each is emitted once; with every update, applying the
// updates and deletes leaves exactly them.
func TestSessionMatchesDefinition(t *testing.T) {
	const gap = 5 // ms
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 2))
		ts := make([]int64, 5+rng.IntN(25))
		for i := range ts {
			ts[i] = rng.Int64N(100)
		}
		sorted := slices.Sorted(slices.Values(ts))
		want := map[string]int64{}
		for i := 0; i < len(sorted); {
			j := i + 1
			for j < len(sorted) && sorted[j]-sorted[j-1] <= gap {
				j++
			}
			want[span(window.Keyed[string]{Key: "a", Window: window.Window{Start: ms(sorted[i]), End: ms(sorted[j-1] + 1)}})] = int64(j - i)
			i = j
		}
		for _, onClose := range []bool{false, true} {
			var opts []stream.WindowOption
			if onClose {
				opts = append(opts, stream.EmitOnClose())
			}
			_, pipe, read := spanCounts(t, window.Session{Gap: gap * time.Millisecond, Grace: time.Hour}, opts...)
			for _, r := range ts {
				pipe("a", float64(r)/1000)
			}
			pipe("flush", 3*3600)
			got := map[string]int64{}
			for _, rec := range read() {
				if strings.HasPrefix(rec, "flush") {
					continue
				}
				if k, ok := strings.CutSuffix(rec, " deleted"); ok {
					require.False(t, onClose, "seed %d: a delete under EmitOnClose", seed)
					require.Contains(t, got, k, "seed %d: delete of a session never emitted", seed)
					delete(got, k)
					continue
				}
				k, n, _ := strings.Cut(rec, "=")
				c, err := strconv.ParseInt(n, 10, 64)
				require.NoError(t, err)
				if onClose {
					require.NotContains(t, got, k, "seed %d: %s emitted twice", seed, k)
				}
				got[k] = c
			}
			require.Equal(t, want, got, "seed %d, EmitOnClose %v, records %v", seed, onClose, ts)
		}
	}
}

// A session aggregation restored from its changelog goes on exactly as
// one that never stopped: the same merges, deletes and final sessions.
func TestSessionRestoredFromChangelog(t *testing.T) {
	for _, onClose := range []bool{false, true} {
		build := func() *stream.Builder {
			b := stream.NewBuilder("app")
			var opts []stream.WindowOption
			if onClose {
				opts = append(opts, stream.EmitOnClose())
			}
			g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
			stream.SessionWindowedBy(g, window.Session{Gap: 10 * time.Second, Grace: 5 * time.Second}).
				Aggregate("visits", func() string { return "" }, func(_, v, agg string) string { return agg + v },
					func(_, a, b string) string { return a + "+" + b }, serde.String, opts...).
				ToStream().To("out", spanSerde{}, serde.String)
			return b
		}
		recs := []restoreRecord{{"a", "p", 0}, {"a", "q", 25}, {"b", "r", 5}, {"a", "s", 3},
			{"a", "t", 14}, {"b", "u", 30}, {"a", "v", 20}, {"a", "w", 60}, {"b", "x", 61}, {"z", "", 200}}
		straight, restored := restoredOutputs(t, build, "app-visits-changelog", recs, 4)
		require.NotEmpty(t, straight)
		require.Equal(t, straight, restored, "EmitOnClose %v", onClose)
	}
}

// Sessions of clicks per user with a 30-minute gap: a click that arrives
// out of order (within the 15-minute grace) between two sessions merges
// them, and with EmitOnClose each user's final sessions are emitted once
// they can no longer grow.
func ExampleSessionWindowedBy() {
	b := stream.NewBuilder("visits")
	clicks := stream.From(b, "clicks", serde.String, serde.String).GroupByKey(serde.String, serde.String)
	stream.SessionWindowedBy(clicks, window.Session{Gap: 30 * time.Minute, Grace: 15 * time.Minute}).
		Count("visits", stream.EmitOnClose()).
		ToStream().
		Map(func(k window.Keyed[string], n int64) (string, string) {
			return k.Key, fmt.Sprintf("%s-%s: %d clicks", k.Window.Start.Format("15:04"), k.Window.End.Add(-time.Millisecond).Format("15:04"), n)
		}).
		To("visits", serde.String, serde.String)
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "clicks", serde.String, serde.String)
	at := func(hhmm string) time.Time {
		t, _ := time.Parse("15:04", hhmm)
		return time.Date(2026, 11, 25, t.Hour(), t.Minute(), 0, 0, time.UTC)
	}
	_ = in.Pipe("ann", "/home", at("09:00"))
	_ = in.Pipe("ann", "/cart", at("09:20"))
	_ = in.Pipe("bob", "/home", at("09:30"))
	_ = in.Pipe("ann", "/home", at("10:00")) // 40 minutes later: a new session
	_ = in.Pipe("ann", "/help", at("09:40")) // out of order: bridges ann's two sessions
	_ = in.Pipe("bob", "/home", at("12:00")) // closes the sessions that ended 30 minutes before

	recs, _ := streamtest.Output(d, "visits", serde.String, serde.String).ReadAll()
	for _, r := range recs {
		fmt.Printf("%s %s\n", r.Key, r.Value)
	}
	// Output:
	// bob 09:30-09:30: 1 clicks
	// ann 09:00-10:00: 4 clicks
}
