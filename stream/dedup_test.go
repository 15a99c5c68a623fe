package stream_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
)

// dedupDriver runs events (key: anything, value: the event id) through
// Dedup with span 1 minute, into "unique".
func dedupDriver(t *testing.T) (*streamtest.Driver, *streamtest.InputTopic[string, string], *streamtest.OutputTopic[string, string]) {
	t.Helper()
	b := stream.NewBuilder("dd")
	stream.From(b, "events", serde.String, serde.String).
		Dedup("ids", func(_, id string) string { return id }, serde.String, time.Minute).
		To("unique", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d, streamtest.Input(d, "events", serde.String, serde.String), streamtest.Output(d, "unique", serde.String, serde.String)
}

// sec returns epoch plus s seconds.
func sec(s float64) time.Time { return epoch.Add(time.Duration(s * float64(time.Second))) }

// values reads out's values, in order.
func values(t *testing.T, out *streamtest.OutputTopic[string, string]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		got = append(got, r.Key+":"+r.Value)
	}
	return got
}

// The first record of an id passes; its repeats within the span, before
// or after it in event time, are dropped; exactly at the span's edge it is
// still a repeat, a millisecond past it is new.
func TestDedupWithinSpan(t *testing.T) {
	d, in, out := dedupDriver(t)
	pipe := func(key, id string, s float64) { require.NoError(t, in.Pipe(key, id, sec(s))) }
	pipe("k1", "a", 0)
	pipe("k2", "a", 10)     // repeat, another key
	pipe("k1", "b", 30)     //
	pipe("k1", "b", 25)     // repeat, earlier in event time, within the span
	pipe("k1", "a", 60)     // exactly the span after the first: repeat
	pipe("k1", "a", 60.001) // a millisecond past: new
	require.Equal(t, []string{"k1:a", "k1:b", "k1:a"}, values(t, out))
	require.Equal(t, int64(3), d.Stats().Duplicates)
	require.Zero(t, d.Stats().Unchecked)
}

// A record older than stream time minus the span can no longer be checked:
// it passes and is counted, whether or not its id was seen.
func TestDedupUncheckedPassesThrough(t *testing.T) {
	d, in, out := dedupDriver(t)
	require.NoError(t, in.Pipe("k", "a", sec(100)))
	require.NoError(t, in.Pipe("k", "a", sec(39.999))) // 60.001 s behind stream time
	require.NoError(t, in.Pipe("k", "z", sec(30)))
	require.NoError(t, in.Pipe("k", "a", sec(40))) // exactly the span behind: checked, a repeat
	require.Equal(t, []string{"k:a", "k:a", "k:z"}, values(t, out))
	require.Equal(t, int64(2), d.Stats().Unchecked)
	require.Equal(t, int64(1), d.Stats().Duplicates)
}

// An id is forgotten once stream time is a span past it, whether or not
// its entry is gone yet: what is a repeat depends on stream time alone.
func TestDedupForgetsWithStreamTime(t *testing.T) {
	_, in, out := dedupDriver(t)
	require.NoError(t, in.Pipe("k", "a", sec(0)))
	require.NoError(t, in.Pipe("k", "other", sec(61))) // stream time: a is forgotten
	require.NoError(t, in.Pipe("k", "a", sec(30)))     // 31 s behind: checked, and new
	require.Equal(t, []string{"k:a", "k:other", "k:a"}, values(t, out))
}

// State stays bounded: ids leave the store (a tombstone each in the
// changelog) about a span after they were seen, so with one new id a
// second over ten minutes of event time the store holds about one span of
// ids, never all of them.
func TestDedupStateIsBounded(t *testing.T) {
	d, in, out := dedupDriver(t)
	changelog := streamtest.Output(d, "dd-ids-changelog", serde.String, serde.Bytes)
	const n = 600
	live, maxLive := 0, 0
	for i := range n {
		require.NoError(t, in.Pipe("k", fmt.Sprintf("id-%d", i), sec(float64(i))))
		recs, err := changelog.ReadAll()
		require.NoError(t, err)
		for _, r := range recs {
			if r.Value == nil {
				live--
			} else {
				live++
			}
		}
		maxLive = max(maxLive, live)
	}
	require.Equal(t, n, out.Len())
	require.LessOrEqual(t, maxLive, 68, "ids live at most a span and a tenth of it (66 s + one second of ids)")
	require.GreaterOrEqual(t, maxLive, 60, "an id lives at least its span")
}

// A segment of ids leaves the changelog at once, a tombstone for each of
// its packs (here a pack per record: each record is a batch of its own),
// in the batch of the record whose expiry pass begins the drop; the store
// removes the ids a chunk at a time after that, writing nothing more to
// the changelog.
func TestDedupDropsASegmentInChunks(t *testing.T) {
	d, in, _ := dedupDriver(t)
	changelog := streamtest.Output(d, "dd-ids-changelog", serde.String, serde.Bytes)
	const ids = 5000
	for i := range ids { // all of them in the segment of expiries [60 s, 66 s)
		require.NoError(t, in.Pipe("k", fmt.Sprintf("old-%d", i), sec(float64(i)/1000)))
	}
	_, err := changelog.ReadAll()
	require.NoError(t, err)
	var perBatch []int
	for i := range 10 {
		require.NoError(t, in.Pipe("k", fmt.Sprintf("new-%d", i), sec(70)))
		recs, err := changelog.ReadAll()
		require.NoError(t, err)
		n := 0
		for _, r := range recs {
			if r.Value == nil {
				n++
			}
		}
		perBatch = append(perBatch, n)
	}
	require.Equal(t, []int{ids, 0, 0, 0, 0, 0, 0, 0, 0, 0}, perBatch, "tombstones of each record's batch")
}

// DedupByKey uses the record's key as its id.
func TestDedupByKey(t *testing.T) {
	b := stream.NewBuilder("dk")
	stream.From(b, "events", serde.String, serde.String).
		DedupByKey("keys", serde.String, time.Hour).
		To("unique", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "events", serde.String, serde.String)
	for i, k := range []string{"a", "b", "a", "c", "b"} {
		require.NoError(t, in.Pipe(k, fmt.Sprint(i), sec(float64(i))))
	}
	require.Equal(t, []string{"a:0", "b:1", "c:3"}, values(t, streamtest.Output(d, "unique", serde.String, serde.String)))
	require.Equal(t, int64(2), d.Stats().Duplicates)
}

// Dedup needs a name, a positive span of whole milliseconds and an id
// serde.
func TestDedupValidation(t *testing.T) {
	for want, add := range map[string]func(s stream.Stream[string, string]){
		"dedup needs a name": func(s stream.Stream[string, string]) {
			s.Dedup("", func(_, v string) string { return v }, serde.String, time.Minute)
		},
		"span 0s must be a positive whole number of milliseconds": func(s stream.Stream[string, string]) {
			s.Dedup("x", func(_, v string) string { return v }, serde.String, 0)
		},
		"the id serde is nil": func(s stream.Stream[string, string]) {
			s.DedupByKey("x", nil, time.Minute)
		},
	} {
		b := stream.NewBuilder("v")
		add(stream.From(b, "in", serde.String, serde.String))
		_, err := b.Build()
		require.ErrorContains(t, err, want)
	}
}

// A dedup task restored from its changelog on an empty state directory
// knows the ids the first one committed, forgets those whose tombstones
// the changelog holds, and goes on expiring the restored ids.
func TestDedupRestoredFromChangelog(t *testing.T) {
	build := func() *stream.Builder {
		b := stream.NewBuilder("app")
		stream.From(b, "in", serde.String, serde.String).
			Dedup("ids", func(_, id string) string { return id }, serde.String, time.Minute).
			To("out", serde.String, serde.String)
		return b
	}
	first := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	run := &taskRun{t: t, changelogTopic: "app-ids-changelog"}
	process := func(tk topology.Task, id string, s float64) []string {
		t.Helper()
		var passed []string
		for _, kv := range run.process(tk, "k", id, sec(s)) {
			passed = append(passed, strings.TrimPrefix(kv, "k="))
		}
		return passed
	}
	require.Equal(t, []string{"a"}, process(first, "a", 0))
	require.Equal(t, []string{"b"}, process(first, "b", 50))
	require.Equal(t, []string{"c"}, process(first, "c", 70)) // the pass at 70 s forgets a
	require.NoError(t, first.(topology.StatefulTask).Commit())
	var tombstones int
	for _, r := range run.changelog {
		if r.Value == nil {
			tombstones++
		}
	}
	require.Equal(t, 1, tombstones, "a's, when the pass at 70 s removed it")

	second := newTask(t, build(), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	st := second.(topology.StatefulTask)
	require.Equal(t, map[string]int64{"app-ids-changelog": -2}, st.RestoreFrom(), "an empty state directory restores from the start")
	run.restore(st)
	require.Empty(t, process(second, "b", 71), "b is known")
	require.Equal(t, []string{"a"}, process(second, "a", 72), "a was forgotten")
	require.Empty(t, process(second, "c", 100))
	from := len(run.changelog)
	require.Equal(t, []string{"d"}, process(second, "d", 200)) // forgets a, b and c
	require.NoError(t, st.Commit())
	// Each tombstone names a pack: the ids gone are those its packs held.
	packs := map[string][]string{}
	var gone []string
	for i, r := range run.changelog {
		require.True(t, slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == state.PackedHeader }), "every record is marked packed")
		_, _, writes, err := state.SegmentedChangelogEntries(r.Key, r.Value)
		require.NoError(t, err)
		for _, w := range writes {
			packs[string(r.Key)] = append(packs[string(r.Key)], string(w.Key))
		}
		if r.Value == nil && i >= from {
			gone = append(gone, packs[string(r.Key)]...)
			delete(packs, string(r.Key))
		}
	}
	require.ElementsMatch(t, []string{"a", "b", "c"}, gone, "the restored ids expire too")
}

// taskRun runs records through tasks made by Topology.NewTask as the
// runtime does: every output acknowledged at the next offset of its topic,
// and the changelog records of changelogTopic kept (copied) for a restore.
type taskRun struct {
	t              *testing.T
	changelogTopic string
	offset         int64
	changelog      []*kgo.Record
}

// process runs one "in" record and returns the "out" records it emitted,
// as "key=value".
func (r *taskRun) process(tk topology.Task, key, value string, ts time.Time) []string {
	r.t.Helper()
	out, err := tk.Process(kafkaRecord("in", 0, r.offset, key, value, ts), nil)
	require.NoError(r.t, err)
	if f, ok := tk.(topology.Flusher); ok { // the record is a batch of its own
		out, err = f.Flush(out)
		require.NoError(r.t, err)
	}
	r.offset++
	var emitted []string
	for _, o := range out {
		switch o.Topic {
		case r.changelogTopic:
			o.Offset = int64(len(r.changelog))
			c := *o
			c.Key, c.Value = bytes.Clone(o.Key), bytes.Clone(o.Value)
			r.changelog = append(r.changelog, &c)
		case "out":
			emitted = append(emitted, string(o.Key)+"="+string(o.Value))
		}
	}
	return emitted
}

// restore replays every changelog record kept into st.
func (r *taskRun) restore(st topology.StatefulTask) {
	r.t.Helper()
	for _, c := range r.changelog {
		require.NoError(r.t, st.Restore(c))
	}
	require.NoError(r.t, st.RestoreDone(map[string]int64{r.changelogTopic: int64(len(r.changelog))}))
}
