package stream_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
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

// joinTopology joins "left" with "right" (string keys and values) in the
// given kind ("inner", "left" or "outer") and window, writing
// "key:leftValue+rightValue" to "out", "-" standing for a missing side.
func joinTopology(kind string, win window.Join) *stream.Builder {
	b := stream.NewBuilder("sj")
	l := stream.From(b, "left", serde.String, serde.String)
	r := stream.From(b, "right", serde.String, serde.String)
	joined := stream.JoinedWith(serde.String, serde.String, serde.String)
	var out stream.Stream[string, string]
	switch kind {
	case "inner":
		out = l.JoinStream("j", r, win, func(_, lv, rv string) string { return lv + "+" + rv }, joined)
	case "left":
		out = l.LeftJoinStream("j", r, win, func(_, lv, rv string, found bool) string {
			if !found {
				rv = "-"
			}
			return lv + "+" + rv
		}, joined)
	case "outer":
		out = l.OuterJoinStream("j", r, win, func(_, lv string, hasL bool, rv string, hasR bool) string {
			if !hasL {
				lv = "-"
			}
			if !hasR {
				rv = "-"
			}
			return lv + "+" + rv
		}, joined)
	}
	out.To("out", serde.String, serde.String)
	return b
}

type joinRig struct {
	t           *testing.T
	d           *streamtest.Driver
	left, right *streamtest.InputTopic[string, string]
	out         *streamtest.OutputTopic[string, string]
}

func newJoinRig(t *testing.T, kind string, win window.Join) *joinRig {
	t.Helper()
	topo, err := joinTopology(kind, win).Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return &joinRig{t: t, d: d,
		left:  streamtest.Input(d, "left", serde.String, serde.String),
		right: streamtest.Input(d, "right", serde.String, serde.String),
		out:   streamtest.Output(d, "out", serde.String, serde.String)}
}

func (r *joinRig) l(key, v string, s float64) {
	r.t.Helper()
	require.NoError(r.t, r.left.Pipe(key, v, sec(s)))
}
func (r *joinRig) r(key, v string, s float64) {
	r.t.Helper()
	require.NoError(r.t, r.right.Pipe(key, v, sec(s)))
}

// read returns what the join emitted since the last read, as
// "key:value@seconds".
func (r *joinRig) read() []string {
	r.t.Helper()
	recs, err := r.out.ReadAll()
	require.NoError(r.t, err)
	var got []string
	for _, rec := range recs {
		got = append(got, fmt.Sprintf("%s:%s@%g", rec.Key, rec.Value, rec.Timestamp.Sub(epoch).Seconds()))
	}
	return got
}

// A left record at ts joins the right records in [ts-Before, ts+After],
// both bounds included, whichever arrives first; a millisecond outside
// either bound does not join. The pair's timestamp is the later one.
func TestJoinStreamWindowBounds(t *testing.T) {
	rig := newJoinRig(t, "inner", window.Join{Before: 5 * time.Second, After: 10 * time.Second, Grace: time.Hour})
	// Left first: right records arrive after it.
	rig.l("k", "L", 100)
	rig.r("k", "early", 94.999)
	rig.r("k", "first", 95)
	rig.r("k", "last", 110)
	rig.r("k", "late", 110.001)
	rig.r("other", "x", 100) // another key never joins
	require.Equal(t, []string{"k:L+first@100", "k:L+last@110"}, rig.read())
	// Right first: left records arrive after it, at the mirrored bounds.
	rig.r("m", "R", 200)
	rig.l("m", "too-early", 189.999)
	rig.l("m", "first", 190)
	rig.l("m", "last", 205)
	rig.l("m", "too-late", 205.001)
	require.Equal(t, []string{"m:first+R@200", "m:last+R@205"}, rig.read())
	require.Zero(t, rig.d.Stats().Late)
}

// Records of one key with equal timestamps are all buffered (none
// overwrites another): each joins every record of the other side.
func TestJoinStreamEqualTimestamps(t *testing.T) {
	rig := newJoinRig(t, "inner", window.JoinWithin(0, 0))
	rig.l("k", "a", 10)
	rig.l("k", "b", 10)
	rig.r("k", "x", 10)
	rig.r("k", "y", 10)
	require.Equal(t, []string{"k:a+x@10", "k:b+x@10", "k:a+y@10", "k:b+y@10"}, rig.read())
}

// Out-of-order records join while both windows are open (within grace);
// once a record's window has closed it gets no match, and a record whose
// own window has closed when it arrives is late: dropped and counted.
func TestJoinStreamOutOfOrderAndLate(t *testing.T) {
	rig := newJoinRig(t, "inner", window.Join{Before: 10 * time.Second, After: 10 * time.Second, Grace: 2 * time.Second})
	rig.l("k", "a", 100)
	rig.r("z", "tick", 111) // stream time 111: a's window closes at 112
	rig.r("k", "x", 101)    // out of order, both windows open
	require.Equal(t, []string{"k:a+x@101"}, rig.read())
	rig.r("z", "tick", 112.001) // a's window has closed
	rig.r("k", "y", 105)        // y's own window closes at 117; a's has closed
	require.Empty(t, rig.read(), "a's window closed: no match any more")
	require.Zero(t, rig.d.Stats().Late)
	rig.l("k", "b", 100.001) // closes at 112.001: still on time, joins x and y
	require.Equal(t, []string{"k:b+x@101", "k:b+y@105"}, rig.read())
	rig.l("k", "c", 100) // closes at 112: late
	rig.r("k", "w", 100) // a right record's window closes at ts+Before+Grace: late too
	require.Empty(t, rig.read())
	require.Equal(t, int64(2), rig.d.Stats().Late)
}

// A left join emits a left record without a match once, when its window
// closes, and never when a match arrives within the window, however late
// in the window it comes. Right records without a match are not emitted.
func TestLeftJoinStreamEmitsUnmatchedAtClose(t *testing.T) {
	rig := newJoinRig(t, "left", window.JoinWithin(10*time.Second, 0))
	rig.l("a", "A", 0)
	rig.l("b", "B", 1)
	rig.r("c", "C", 2) // right, unmatched: never emitted
	require.Empty(t, rig.read(), "nothing is emitted eagerly")
	rig.r("a", "X", 10) // A's last moment
	require.Equal(t, []string{"a:A+X@10"}, rig.read())
	rig.r("z", "tick", 11) // B closes at 11: not yet past
	require.Empty(t, rig.read())
	rig.r("z", "tick", 11.001)
	require.Equal(t, []string{"b:B+-@1"}, rig.read(), "B once, at its own timestamp")
	rig.r("z", "tick", 100)
	require.Empty(t, rig.read(), "A had a match: never emitted alone; B not twice")
	rig.r("b", "Y", 95) // B is gone with its window
	require.Empty(t, rig.read())
}

// An outer join also emits right records without a match when their
// window closes (ts + Before + Grace).
func TestOuterJoinStreamEmitsBothSidesAtClose(t *testing.T) {
	rig := newJoinRig(t, "outer", window.Join{Before: 3 * time.Second, After: 5 * time.Second, Grace: time.Second})
	rig.r("r", "R", 0) // closes at 0+3+1 = 4
	rig.l("l", "L", 0) // closes at 0+5+1 = 6
	rig.l("m", "M", 1)
	rig.r("m", "N", 6) // within M's After: a pair
	require.Equal(t, []string{"r:-+R@0", "m:M+N@6"}, rig.read(), "stream time 6 closed R (at 4) before N looked for matches")
	rig.l("z", "tick", 4)
	require.Empty(t, rig.read())
	rig.l("z2", "tick", 6.001)
	require.Equal(t, []string{"l:L+-@0"}, rig.read(), "L closes at 6")
	rig.l("z3", "tick", 60)
	require.Equal(t, []string{"z:tick+-@4", "z2:tick+-@6.001"}, rig.read(), "the ticks; M and N matched")
}

// A pair joins only while both windows are open: a right record within a
// left record's range that arrives after the left window closed does not
// join, and the left join's unmatched result is the only one (no spurious
// pair after it).
func TestLeftJoinStreamNoPairAfterClose(t *testing.T) {
	rig := newJoinRig(t, "left", window.JoinWithin(10*time.Second, 0))
	rig.l("k", "A", 0)
	rig.r("z", "tick", 10.001)
	require.Equal(t, []string{"k:A+-@0"}, rig.read())
	rig.r("k", "X", 5) // X's window [-5, 15] is open; A's is closed
	require.Empty(t, rig.read())
	require.Zero(t, rig.d.Stats().Late)
}

// Join buffers are bounded: a record leaves its buffer (a tombstone in
// the changelog) when its window closes.
func TestJoinStreamBuffersExpire(t *testing.T) {
	rig := newJoinRig(t, "inner", window.JoinWithin(time.Second, 0))
	lc := streamtest.Output(rig.d, "sj-j-left-changelog", serde.Bytes, serde.Bytes)
	live, maxLive := 0, 0
	for i := range 200 {
		rig.l("k", "v", float64(i)/10)
		recs, err := lc.ReadAll()
		require.NoError(t, err)
		for _, r := range recs {
			if r.Deleted {
				live--
			} else {
				live++
			}
		}
		maxLive = max(maxLive, live)
	}
	require.LessOrEqual(t, maxLive, 11, "one second of records (10) and the one arriving")
}

// The join needs a name, a valid window, serdes and co-partitioned keys.
func TestJoinStreamValidation(t *testing.T) {
	joined := stream.JoinedWith(serde.String, serde.String, serde.String)
	cat := func(_, a, b string) string { return a + b }
	for want, add := range map[string]func(l, r stream.Stream[string, string]){
		"joinstream needs a name": func(l, r stream.Stream[string, string]) {
			l.JoinStream("", r, window.JoinWithin(time.Second, 0), cat, joined)
		},
		"join window before must not be negative": func(l, r stream.Stream[string, string]) {
			l.JoinStream("j", r, window.Join{Before: -time.Second}, cat, joined)
		},
		"the Joined serdes must not be nil": func(l, r stream.Stream[string, string]) {
			l.JoinStream("j", r, window.JoinWithin(time.Second, 0), cat, stream.Joined[string, string, string]{})
		},
		"call Repartition before joining": func(l, r stream.Stream[string, string]) {
			l.JoinStream("j", r.SelectKey(func(k, _ string) string { return k }), window.JoinWithin(time.Second, 0), cat, joined)
		},
	} {
		b := stream.NewBuilder("v")
		add(stream.From(b, "l", serde.String, serde.String), stream.From(b, "r", serde.String, serde.String))
		_, err := b.Build()
		require.ErrorContains(t, err, want)
	}
}

// joinTaskRun runs records of "left" and "right" through tasks made by
// Topology.NewTask as the runtime does, keeping every changelog record.
type joinTaskRun struct {
	t         *testing.T
	offsets   map[string]int64
	changelog []*kgo.Record
}

// process runs one record and returns the "out" records it emitted.
func (r *joinTaskRun) process(tk topology.Task, topic, key, value string, s float64) []string {
	r.t.Helper()
	out, err := tk.Process(kafkaRecord(topic, 0, r.offsets[topic], key, value, sec(s)), nil)
	require.NoError(r.t, err)
	r.offsets[topic]++
	var emitted []string
	for _, o := range out {
		switch {
		case strings.HasSuffix(o.Topic, "-changelog"):
			o.Offset = r.offsets[o.Topic]
			r.offsets[o.Topic]++
			c := *o
			c.Key, c.Value = bytes.Clone(o.Key), bytes.Clone(o.Value)
			r.changelog = append(r.changelog, &c)
		case o.Topic == "out":
			emitted = append(emitted, string(o.Key)+"="+string(o.Value))
		}
	}
	return emitted
}

func (r *joinTaskRun) restore(st topology.StatefulTask) {
	r.t.Helper()
	next := map[string]int64{}
	for _, c := range r.changelog {
		require.NoError(r.t, st.Restore(c))
		next[c.Topic] = c.Offset + 1
	}
	require.NoError(r.t, st.RestoreDone(next))
}

// A task restored from the changelogs after a crash goes on exactly as
// the task that never crashed: same pairs, same unmatched records at the
// same moments (an outer join, so both buffers and their match flags
// matter).
func TestJoinStreamRestoreEquivalence(t *testing.T) {
	type rec struct {
		topic, key, value string
		s                 float64
	}
	input := []rec{
		{"left", "a", "A1", 0}, {"right", "a", "X1", 3}, {"left", "b", "B1", 4},
		{"right", "c", "C1", 5}, {"left", "a", "A2", 6},
		// crash here
		{"right", "b", "Y1", 9}, {"right", "a", "X2", 12}, {"left", "c", "C2", 14},
		{"left", "z", "tick", 40},
	}
	const crashAt = 5
	win := window.JoinWithin(5*time.Second, time.Second)
	runAll := func(tasks func(i int) topology.Task, run *joinTaskRun) []string {
		var out []string
		for i, r := range input {
			for _, o := range run.process(tasks(i), r.topic, r.key, r.value, r.s) {
				out = append(out, fmt.Sprintf("%d:%s", i, o))
			}
		}
		return out
	}
	whole := newTask(t, joinTopology("outer", win), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	want := runAll(func(int) topology.Task { return whole }, &joinTaskRun{t: t, offsets: map[string]int64{}})
	require.Contains(t, want, "5:b=B1+Y1")
	require.Contains(t, want, "6:c=-+C1", "C1 had no match within its window (closed at 11)")

	run := &joinTaskRun{t: t, offsets: map[string]int64{}}
	first := newTask(t, joinTopology("outer", win), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	var second topology.Task
	got := runAll(func(i int) topology.Task {
		if i < crashAt {
			return first
		}
		if second == nil {
			require.NoError(t, first.(topology.StatefulTask).Commit())
			second = newTask(t, joinTopology("outer", win), topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
			run.restore(second.(topology.StatefulTask))
		}
		return second
	}, run)
	require.Equal(t, want, got)
}

// A stream-stream join decides by stream time only (DESIGN.md invariant
// 7): the same out-of-order input, with late records, gives the same
// output whether the wall clock stands still or races ahead.
func TestJoinStreamIgnoresTheWallClock(t *testing.T) {
	run := func(race bool) []string {
		topo, err := joinTopology("outer", window.Join{Before: 2 * time.Second, After: 5 * time.Second, Grace: time.Second}).Build()
		require.NoError(t, err)
		d := streamtest.New(topo, streamtest.WithPartitions("left", 2), streamtest.WithPartitions("right", 2))
		defer d.Close()
		left := streamtest.Input(d, "left", serde.String, serde.String)
		right := streamtest.Input(d, "right", serde.String, serde.String)
		input := rand.New(rand.NewPCG(3, 3))
		clockSteps := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for i := range 400 {
			in := left
			if input.IntN(2) == 1 {
				in = right
			}
			ts := float64(i)/4 - float64(input.IntN(12)) // up to 12 s out of order: some late
			require.NoError(t, in.Pipe(fmt.Sprintf("k%d", input.IntN(6)), fmt.Sprint(i), sec(ts)))
			if race {
				d.AdvanceWallClock(time.Duration(clockSteps.IntN(1000)) * time.Second)
			}
		}
		recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
		require.NoError(t, err)
		var got []string
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%d/%s:%s@%d", r.Partition, r.Key, r.Value, r.Timestamp.UnixMilli()))
		}
		require.NotZero(t, d.Stats().Late)
		return got
	}
	frozen := run(false)
	require.Greater(t, len(frozen), 100)
	require.Equal(t, frozen, run(true))
}

// Left and outer joins pair at the same bounds as the inner join, and a
// record is emitted alone exactly when stream time passes its close: not
// at it.
func TestOuterJoinStreamEdges(t *testing.T) {
	rig := newJoinRig(t, "outer", window.Join{Before: 3 * time.Second, After: 5 * time.Second, Grace: time.Second})
	rig.r("r", "R", 0) // closes at 0+3+1
	rig.l("z", "tick", 4)
	require.Empty(t, rig.read(), "stream time 4 is R's close, not past it")
	rig.l("z", "tick", 4.001)
	require.Equal(t, []string{"r:-+R@0"}, rig.read())
	rig.l("k", "L", 10)
	rig.r("k", "first", 7)      // ts-Before: a pair
	rig.r("k", "before", 6.999) // a millisecond earlier: none
	rig.r("k", "last", 15)      // ts+After: a pair
	rig.r("k", "after", 15.001)
	require.Equal(t, []string{"k:L+first@10",
		// stream time 15 closes the ticks (at 10 and 10.001) and before
		// (at 10.999), before last looks for its matches
		"z:tick+-@4", "z:tick+-@4.001", "k:-+before@6.999",
		"k:L+last@15"}, rig.read())
	rig.l("z", "tick", 30)
	require.Equal(t, []string{"k:-+after@15.001"}, rig.read(), "L was matched: never alone")
}
