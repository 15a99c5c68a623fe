package stream_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
)

// span writes a keyed window as key[start,end) in seconds since epoch,
// with millisecond fractions: sliding and session windows end a
// millisecond after their last instant.
func span(k window.Keyed[string]) string {
	s := func(t time.Time) string { return strconv.FormatFloat(t.Sub(epoch).Seconds(), 'f', -1, 64) }
	return fmt.Sprintf("%s[%s,%s)", k.Key, s(k.Window.Start), s(k.Window.End))
}

// spanSerde writes a windowed key as its span (to read in tests; it
// cannot decode). Writing the windowed table straight to a topic keeps its
// tombstones.
type spanSerde struct{}

func (spanSerde) Encode(k window.Keyed[string]) ([]byte, error) { return []byte(span(k)), nil }
func (spanSerde) Decode([]byte) (window.Keyed[string], error) {
	return window.Keyed[string]{}, errors.New("spanSerde cannot decode")
}

// spanCounts counts "clicks" per key in spec's windows (sliding or, with
// session, session windows) and writes span -> count to "counts".
func spanCounts(t *testing.T, spec window.Spec, opts ...stream.WindowOption) (*streamtest.Driver, func(key string, s float64), func() []string) {
	t.Helper()
	b := stream.NewBuilder("sc")
	g := stream.From(b, "clicks", serde.String, serde.String).GroupByKey(serde.String, serde.String)
	var table stream.WindowedTable[string, int64]
	if s, ok := spec.(window.Session); ok {
		table = stream.SessionWindowedBy(g, s).Count("counts", opts...)
	} else {
		table = stream.WindowedBy(g, spec).Count("counts", opts...)
	}
	table.ToStream().To("counts", spanSerde{}, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	in := streamtest.Input(d, "clicks", serde.String, serde.String)
	out := streamtest.Output(d, "counts", serde.String, serde.Int64)
	pipe := func(key string, s float64) { t.Helper(); require.NoError(t, in.Pipe(key, "", sec(s))) }
	read := func() []string {
		t.Helper()
		recs, err := out.ReadAll()
		require.NoError(t, err)
		var got []string
		for _, r := range recs {
			if r.Deleted {
				got = append(got, r.Key+" deleted")
			} else {
				got = append(got, fmt.Sprintf("%s=%d", r.Key, r.Value))
			}
		}
		return got
	}
	return d, pipe, read
}

// In order: a record creates its left window [ts-10s, ts] (both ends
// included: [ts-10s, ts+1ms) as a window.Window) from the records before
// it within 10s, and the record before it gets its right window, starting
// 1ms after it, when ts falls in it. Records exactly 10s apart share a
// window, 10.001s apart do not. Keys are independent.
func TestSlidingCountInOrder(t *testing.T) {
	_, pipe, read := spanCounts(t, window.Sliding{Difference: 10 * time.Second, Grace: time.Minute})
	pipe("a", 10)
	require.Equal(t, []string{"a[0,10.001)=1"}, read())
	pipe("a", 15)
	require.Equal(t, []string{"a[10.001,20.002)=1", "a[5,15.001)=2"}, read())
	pipe("b", 15)
	require.Equal(t, []string{"b[5,15.001)=1"}, read())
	pipe("a", 30) // 15s after the last: alone in its window, and in no right window
	require.Equal(t, []string{"a[20,30.001)=1"}, read())
	pipe("a", 40) // exactly 10s after: shares its left window
	require.Equal(t, []string{"a[30.001,40.002)=1", "a[30,40.001)=2"}, read())
	pipe("a", 50.001) // 10.001s after: does not; 40's right window is its left one
	require.Equal(t, []string{"a[40.001,50.002)=1"}, read())
	pipe("a", 50.001) // same time: updates the windows that hold it, creates none
	require.Equal(t, []string{"a[40.001,50.002)=2"}, read())
}

// Out of order: a record updates every window that contains it, creates
// its left window from the records before it and its right window from
// the records after it; every window holds exactly the records of its
// range. A window closed before the record came (but kept) still seeds
// its left window.
func TestSlidingCountOutOfOrder(t *testing.T) {
	_, pipe, read := spanCounts(t, window.Sliding{Difference: 10 * time.Second, Grace: time.Minute})
	pipe("a", 10)
	pipe("a", 20)
	require.Equal(t, []string{"a[0,10.001)=1", "a[10.001,20.002)=1", "a[10,20.001)=2"}, read())
	pipe("a", 15)
	require.Equal(t, []string{
		"a[10,20.001)=3",     // {10, 15, 20}
		"a[10.001,20.002)=2", // {15, 20}
		"a[5,15.001)=2",      // left: {10, 15}
		"a[15.001,25.002)=1", // right: {20}
	}, read())
	pipe("a", 4) // before every window: its right window holds 10
	require.Equal(t, []string{"a[0,10.001)=2", "a[-6,4.001)=1", "a[4.001,14.002)=1"}, read())

	// Grace 5s: [0, 10] has closed when 15 arrives, [5, 15] has not.
	_, pipe, read = spanCounts(t, window.Sliding{Difference: 10 * time.Second, Grace: 5 * time.Second})
	pipe("a", 10)
	pipe("a", 20) // stream time 20: [0, 10] closed at 15.001
	read()
	pipe("a", 15)
	require.Equal(t, []string{"a[10,20.001)=3", "a[10.001,20.002)=2", "a[5,15.001)=2", "a[15.001,25.002)=1"}, read(),
		"the closed window emits no update, but its records count in the left window")
}

// With EmitOnClose every window emits once, its final count, when stream
// time reaches its end (its last millisecond + 1ms) plus the grace; an
// out-of-order record within the grace counts; one whose last possible
// window [ts, ts+10s] has closed is late: dropped and counted.
func TestSlidingCountEmitsOnCloseWithGrace(t *testing.T) {
	d, pipe, read := spanCounts(t, window.Sliding{Difference: 10 * time.Second, Grace: 5 * time.Second}, stream.EmitOnClose())
	pipe("a", 10)
	pipe("a", 12)
	pipe("b", 15)
	require.Empty(t, read())
	pipe("b", 15.001) // [0, 10.001) closes at 15.001
	require.Equal(t, []string{"a[0,10.001)=1"}, read())
	pipe("a", 9) // its left window has closed: it counts in the later ones
	require.Zero(t, d.Stats().Late)
	pipe("x", 17.001)
	require.Equal(t, []string{"a[2,12.001)=3"}, read(), "9, 10 and 12")
	pipe("x", 60)
	require.Equal(t, []string{
		"b[5,15.001)=1",
		"b[5.001,15.002)=2",
		"x[7.001,17.002)=1",
		"a[9.001,19.002)=2",  // 9's right window: 10 and 12
		"a[10.001,20.002)=1", // 12
		"b[15.001,25.002)=1",
	}, read(), "in the order they close; a's left window of 9 closed before it was made, and is never emitted")
	pipe("a", 30) // [30-ish] closed long ago: late
	require.Equal(t, int64(1), d.Stats().Late)
	pipe("z", 200)
	require.Equal(t, []string{"x[50,60.001)=1"}, read(), "each window once")
}

// Sliding windows need a positive difference in whole milliseconds.
func TestSlidingValidation(t *testing.T) {
	b := stream.NewBuilder("v")
	g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
	stream.WindowedBy(g, window.Sliding{}).Count("c")
	_, err := b.Build()
	require.ErrorContains(t, err, "sliding window difference must be positive")
}

// restoreRun runs records through one task, or through a task that
// commits, "crashes" after at (its uncommitted output lost) and is
// restored from its changelog on an empty state directory, and returns
// the "out" records from at on.
type restoreRecord struct {
	key, value string
	s          float64
}

func restoredOutputs(t *testing.T, build func() *stream.Builder, changelog string, recs []restoreRecord, at int) (straight, restored []string) {
	t.Helper()
	one := &taskRun{t: t, changelogTopic: changelog}
	tk := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	for i, r := range recs {
		out := one.process(tk, r.key, r.value, sec(r.s))
		if i >= at {
			straight = append(straight, out...)
		}
	}
	two := &taskRun{t: t, changelogTopic: changelog}
	first := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	for _, r := range recs[:at] {
		two.process(first, r.key, r.value, sec(r.s))
	}
	require.NoError(t, first.(topology.StatefulTask).Commit())
	second := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	two.restore(second.(topology.StatefulTask))
	for _, r := range recs[at:] {
		restored = append(restored, two.process(second, r.key, r.value, sec(r.s))...)
	}
	return straight, restored
}

// A sliding aggregation restored from its changelog goes on exactly as
// one that never stopped: the same updates, the same windows emitted once
// on close.
func TestSlidingRestoredFromChangelog(t *testing.T) {
	for _, onClose := range []bool{false, true} {
		build := func() *stream.Builder {
			b := stream.NewBuilder("app")
			var opts []stream.WindowOption
			if onClose {
				opts = append(opts, stream.EmitOnClose())
			}
			g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
			stream.WindowedBy(g, window.Sliding{Difference: 10 * time.Second, Grace: 5 * time.Second}).
				Aggregate("seen", func() string { return "" }, func(_, v, agg string) string { return agg + v }, serde.String, opts...).
				ToStream().To("out", spanSerde{}, serde.String)
			return b
		}
		recs := []restoreRecord{{"a", "p", 10}, {"a", "q", 12}, {"b", "r", 15}, {"a", "s", 20},
			{"a", "t", 9}, {"a", "u", 24}, {"b", "v", 18}, {"a", "w", 33}, {"x", "", 60}}
		straight, restored := restoredOutputs(t, build, "app-seen-changelog", recs, 4)
		require.NotEmpty(t, straight)
		require.Equal(t, straight, restored, "EmitOnClose %v", onClose)
	}
}

// For records in any order (none late), the windows and counts are those
// that sliding windows define: for every record t, its left window
// [t-d, t], and its right window [t+1ms, t+1ms+d] when a record falls in
// it; each holds the records in its range. Checked with EmitOnClose (each
// window emitted once) and with every update (the last update of each
// window, none of them empty).
func TestSlidingMatchesDefinition(t *testing.T) {
	const d = 10 // ms
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		ts := make([]int64, 5+rng.IntN(25))
		for i := range ts {
			ts[i] = rng.Int64N(80)
		}
		want := map[string]int64{}
		count := func(start int64) {
			n := int64(0)
			for _, r := range ts {
				if r >= start && r <= start+d {
					n++
				}
			}
			if n > 0 {
				want[span(window.Keyed[string]{Key: "a", Window: window.Window{Start: ms(start), End: ms(start + d + 1)}})] = n
			}
		}
		for _, r := range ts {
			count(r - d)
			count(r + 1)
		}
		for _, onClose := range []bool{false, true} {
			var opts []stream.WindowOption
			if onClose {
				opts = append(opts, stream.EmitOnClose())
			}
			_, pipe, read := spanCounts(t, window.Sliding{Difference: d * time.Millisecond, Grace: time.Hour}, opts...)
			for _, r := range ts {
				pipe("a", float64(r)/1000)
			}
			pipe("flush", 3*3600)
			got := map[string]int64{}
			for _, rec := range read() {
				k, n, ok := strings.Cut(rec, "=")
				require.True(t, ok, rec)
				if strings.HasPrefix(k, "flush") {
					continue
				}
				c, err := strconv.ParseInt(n, 10, 64)
				require.NoError(t, err)
				if onClose {
					_, seen := got[k]
					require.False(t, seen, "seed %d: %s emitted twice", seed, k)
				}
				require.Positive(t, c)
				got[k] = c
			}
			require.Equal(t, want, got, "seed %d, EmitOnClose %v, records %v", seed, onClose, ts)
		}
	}
}

// ms is the time ms milliseconds after epoch.
func ms(n int64) time.Time { return epoch.Add(time.Duration(n) * time.Millisecond) }
