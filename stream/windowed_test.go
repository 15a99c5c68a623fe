package stream_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
)

// windowedCounts counts "clicks" per key in spec's windows and writes
// "key@start-end" -> count to "counts".
func windowedCounts(t *testing.T, spec window.Spec, opts ...stream.WindowOption) (*streamtest.Driver, *streamtest.InputTopic[string, string], *streamtest.OutputTopic[string, int64]) {
	t.Helper()
	b := stream.NewBuilder("wc")
	g := stream.From(b, "clicks", serde.String, serde.String).GroupByKey(serde.String, serde.String)
	stream.WindowedBy(g, spec).
		Count("counts", opts...).
		ToStream().
		Map(func(k window.Keyed[string], n int64) (string, int64) {
			return fmt.Sprintf("%s@%s-%s", k.Key, clock(k.Window.Start), clock(k.Window.End)), n
		}).
		To("counts", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d, streamtest.Input(d, "clicks", serde.String, serde.String), streamtest.Output(d, "counts", serde.String, serde.Int64)
}

// clock is t's seconds since epoch, as mm:ss.
func clock(t time.Time) string {
	d := t.Sub(epoch)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func counts(t *testing.T, out *streamtest.OutputTopic[string, int64]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s=%d", r.Key, r.Value))
	}
	return got
}

// Tumbling windows: start inclusive, end exclusive, aligned to the epoch;
// by default every record emits its window's new count.
func TestTumblingCountEmitsEveryUpdate(t *testing.T) {
	_, in, out := windowedCounts(t, window.Tumbling{Size: time.Minute})
	for _, c := range []struct {
		key string
		s   float64
	}{{"a", 0}, {"a", 30}, {"b", 59.999}, {"a", 60}} {
		require.NoError(t, in.Pipe(c.key, "", sec(c.s)))
	}
	require.Equal(t, []string{"a@00:00-01:00=1", "a@00:00-01:00=2", "b@00:00-01:00=1", "a@01:00-02:00=1"}, counts(t, out))
}

// With EmitOnClose each window emits once, its final count, when stream
// time reaches its end plus the grace; a record within the grace still
// counts, one past it is late: dropped and counted.
func TestTumblingCountEmitsOnClose(t *testing.T) {
	d, in, out := windowedCounts(t, window.Tumbling{Size: time.Minute, Grace: 10 * time.Second}, stream.EmitOnClose())
	pipe := func(key string, s float64) { t.Helper(); require.NoError(t, in.Pipe(key, "", sec(s))) }
	pipe("a", 0)
	pipe("a", 30)
	pipe("b", 50)
	pipe("a", 65) // stream time 65 s: [0, 60) is open until 70 s
	require.Empty(t, counts(t, out))
	pipe("a", 59) // out of order, within the grace: counts
	pipe("x", 69.999)
	require.Empty(t, counts(t, out))
	pipe("x", 70) // stream time 70 s: [0, 60) closes
	require.Equal(t, []string{"a@00:00-01:00=3", "b@00:00-01:00=1"}, counts(t, out))
	pipe("a", 5) // late
	require.Equal(t, int64(1), d.Stats().Late)
	pipe("z", 130) // closes [60, 120)
	require.Equal(t, []string{"a@01:00-02:00=1", "x@01:00-02:00=2"}, counts(t, out))
}

// Hopping windows overlap: a record counts in every window that contains
// it; a record late for some of its windows still counts in the others,
// and is late only when all have closed.
func TestHoppingCount(t *testing.T) {
	d, in, out := windowedCounts(t, window.Hopping{Size: time.Minute, Advance: 30 * time.Second})
	require.NoError(t, in.Pipe("a", "", sec(45)))
	require.Equal(t, []string{"a@00:00-01:00=1", "a@00:30-01:30=1"}, counts(t, out))
	require.NoError(t, in.Pipe("a", "", sec(95))) // closes [0, 60) and [30, 90)
	require.Equal(t, []string{"a@01:00-02:00=1", "a@01:30-02:30=1"}, counts(t, out))
	require.NoError(t, in.Pipe("a", "", sec(61))) // [30, 90) closed, [60, 120) open
	require.Equal(t, []string{"a@01:00-02:00=2"}, counts(t, out))
	require.Zero(t, d.Stats().Late)
	require.NoError(t, in.Pipe("a", "", sec(10)))
	require.Equal(t, int64(1), d.Stats().Late)
}

// State stays bounded: a window's aggregate leaves the store (a tombstone
// in the changelog) when the window closes.
func TestWindowStateIsBounded(t *testing.T) {
	d, in, _ := windowedCounts(t, window.Tumbling{Size: time.Minute, Grace: 10 * time.Second}, stream.EmitOnClose())
	changelog := streamtest.Output(d, "wc-counts-changelog", serde.String, serde.Bytes)
	live := map[string]bool{} // changelog key -> not deleted
	maxLive := 0
	for i := range 600 {
		require.NoError(t, in.Pipe(fmt.Sprintf("k%d", i%5), "", sec(float64(i))))
		recs, err := changelog.ReadAll()
		require.NoError(t, err)
		for _, r := range recs {
			if r.Value == nil {
				delete(live, r.Key)
			} else {
				live[r.Key] = true
			}
		}
		maxLive = max(maxLive, len(live))
	}
	require.Equal(t, 10, maxLive, "5 keys, in at most two windows: the closing one and the next")
}

// Reduce and Aggregate per window; a windowed aggregation needs a name and
// a supported spec.
func TestWindowedAggregateAndValidation(t *testing.T) {
	b := stream.NewBuilder("wa")
	g := stream.From(b, "amounts", serde.String, serde.Int64).GroupByKey(serde.String, serde.Int64)
	stream.WindowedBy(g, window.Tumbling{Size: time.Minute}).
		Reduce("sums", func(agg, v int64) int64 { return agg + v }).
		ToStream().
		Map(func(k window.Keyed[string], v int64) (string, int64) { return k.Key + "@" + clock(k.Window.Start), v }).
		To("sums", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "amounts", serde.String, serde.Int64)
	require.NoError(t, in.Pipe("a", 5, sec(1)))
	require.NoError(t, in.Pipe("a", 7, sec(2)))
	require.NoError(t, in.Pipe("a", 1, sec(61)))
	out, err := streamtest.Output(d, "sums", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	require.Len(t, out, 3)
	require.Equal(t, int64(12), out[1].Value)
	require.Equal(t, "a@01:00", out[2].Key)

	for want, spec := range map[string]window.Spec{
		"aggregate them with stream.SessionWindowedBy": window.Session{Gap: time.Minute},
		"tumbling window size must be positive":        window.Tumbling{},
		"windowed-count needs a name":                  window.Tumbling{Size: time.Minute},
		"the window spec is nil":                       nil,
	} {
		b := stream.NewBuilder("v")
		g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
		name := "c"
		if want == "windowed-count needs a name" {
			name = ""
		}
		stream.WindowedBy(g, spec).Count(name)
		_, err := b.Build()
		require.ErrorContains(t, err, want)
	}
}

// A windowed count restored from its changelog on an empty state
// directory goes on from the committed counts, and emits each window once
// when it closes.
func TestWindowRestoredFromChangelog(t *testing.T) {
	build := func() *stream.Builder {
		b := stream.NewBuilder("app")
		g := stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String)
		stream.WindowedBy(g, window.Tumbling{Size: time.Minute}).
			Count("counts", stream.EmitOnClose()).
			ToStream().
			Map(func(k window.Keyed[string], n int64) (string, string) {
				return k.Key + "@" + clock(k.Window.Start), fmt.Sprint(n)
			}).
			To("out", serde.String, serde.String)
		return b
	}
	run := &taskRun{t: t, changelogTopic: "app-counts-changelog"}
	process := func(tk topology.Task, key string, s float64) []string {
		t.Helper()
		return run.process(tk, key, "", sec(s))
	}
	first := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	require.Empty(t, process(first, "a", 1))
	require.Empty(t, process(first, "a", 2))
	require.Equal(t, []string{"a@00:00=2"}, process(first, "b", 61))
	require.Empty(t, process(first, "a", 62))
	require.NoError(t, first.(topology.StatefulTask).Commit())

	second := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	st := second.(topology.StatefulTask)
	run.restore(st)
	require.Empty(t, process(second, "a", 63))
	require.Equal(t, []string{"a@01:00=2", "b@01:00=1"}, process(second, "c", 121), "the restored counts, each window once")
}

// WithTimestamp takes event time from the record itself: here a field of
// the value. It decides windows and stream time, and is the records'
// timestamp downstream; a record whose time cannot be read goes to the
// DLQ and leaves stream time alone.
func TestWithTimestampDrivesWindows(t *testing.T) {
	b := stream.NewBuilder("ts")
	fromValue := func(r *kgo.Record) (time.Time, error) {
		_, after, ok := bytes.Cut(r.Value, []byte("at="))
		if !ok {
			return time.Time{}, fmt.Errorf("no at= in %q", r.Value)
		}
		var s float64
		if _, err := fmt.Sscan(string(after), &s); err != nil {
			return time.Time{}, err
		}
		return sec(s), nil
	}
	g := stream.From(b, "clicks", serde.String, serde.String, stream.WithTimestamp(fromValue)).GroupByKey(serde.String, serde.String)
	stream.WindowedBy(g, window.Tumbling{Size: time.Minute}).
		Count("counts", stream.EmitOnClose()).
		ToStream().
		Map(func(k window.Keyed[string], n int64) (string, int64) { return k.Key + "@" + clock(k.Window.Start), n }).
		To("counts", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "clicks", serde.String, serde.String)
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // the Kafka timestamp, ignored
	require.NoError(t, in.Pipe("a", "at=10", wall))
	require.NoError(t, in.Pipe("a", "at=50", wall))
	require.NoError(t, in.Pipe("a", "no time", wall.Add(time.Hour)))
	require.NoError(t, in.Pipe("a", "at=70", wall))
	out, err := streamtest.Output(d, "counts", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "a@00:00", out[0].Key)
	require.Equal(t, int64(2), out[0].Value)
	require.True(t, out[0].Timestamp.Equal(sec(59.999)), "a closed window's record is stamped with its last millisecond")
	dlq, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dlq, 1)
	require.Contains(t, dlq[0].Header("sluice.error"), "timestamp: no at= in")

}
