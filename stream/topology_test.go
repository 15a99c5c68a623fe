package stream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
)

func toOut(s stream.Stream[string, string]) {
	s.To("out", serde.String, serde.String)
}

func TestBuildValidation(t *testing.T) {
	var (
		nilString serde.Serde[string]
		nilInt    serde.Serde[int64]
	)
	tests := []struct {
		name     string
		appID    string // "app" when empty and !emptyAppID
		opts     []stream.BuilderOption
		topology func(b *stream.Builder)
		// wantErr are substrings of the error, each telling the user what
		// to fix.
		wantErr []string
	}{
		{
			name:     "no sources",
			topology: func(*stream.Builder) {},
			wantErr:  []string{"stream: topology has no sources: add one with stream.From"},
		},
		{
			name:     "empty app id",
			appID:    "-empty-",
			topology: func(b *stream.Builder) { toOut(fromIn(b)) },
			wantErr:  []string{`stream: app id "" must be non-empty and use only [a-zA-Z0-9._-]: it prefixes topic names`},
		},
		{
			name:     "app id with a space",
			appID:    "my app",
			topology: func(b *stream.Builder) { toOut(fromIn(b)) },
			wantErr:  []string{`app id "my app" must be non-empty and use only [a-zA-Z0-9._-]`},
		},
		{
			name:     "app id with a slash",
			appID:    "team/app",
			topology: func(b *stream.Builder) { toOut(fromIn(b)) },
			wantErr:  []string{`app id "team/app"`, "[a-zA-Z0-9._-]"},
		},
		{
			name:     "unknown error policy",
			opts:     []stream.BuilderOption{stream.WithErrorPolicy(stream.ErrorPolicy(7))},
			topology: func(b *stream.Builder) { toOut(fromIn(b)) },
			wantErr:  []string{"stream: unknown error policy ErrorPolicy(7)"},
		},
		{
			name: "two operators named the same",
			topology: func(b *stream.Builder) {
				fromIn(b).
					Filter(func(_, _ string) bool { return true }, stream.Named("step")).
					MapValues(strings.ToUpper, stream.Named("step")).
					To("out", serde.String, serde.String)
			},
			wantErr: []string{`stream: name "step" is used by two operators (filter and mapvalues): give one another name with stream.Named`},
		},
		{
			name: "an explicit name that collides with a default name",
			topology: func(b *stream.Builder) {
				fromIn(b).Filter(func(_, _ string) bool { return true }, stream.Named("sink-0002")).
					To("out", serde.String, serde.String)
			},
			wantErr: []string{`name "sink-0002" is used by two operators (filter and sink)`},
		},
		{
			name: "a source and a sink named the same",
			topology: func(b *stream.Builder) {
				stream.From(b, "in", serde.String, serde.String, stream.Named("orders")).
					To("out", serde.String, serde.String, stream.Named("orders"))
			},
			wantErr: []string{`name "orders" is used by two operators (source and sink)`},
		},
		{
			name: "two sources reading the same topic",
			topology: func(b *stream.Builder) {
				toOut(fromIn(b))
				stream.From(b, "in", serde.String, serde.Int64).
					MapValues(func(int64) string { return "" }).
					To("out2", serde.String, serde.String)
			},
			wantErr: []string{`stream: topic "in" is read by two sources (source-0000 and source-0002): read it once and reuse the Stream`},
		},
		{
			name: "source with an empty topic",
			topology: func(b *stream.Builder) {
				toOut(stream.From(b, "", serde.String, serde.String))
			},
			wantErr: []string{"source-0000: invalid topic name \"\""},
		},
		{
			name: "sink with an empty topic",
			topology: func(b *stream.Builder) {
				fromIn(b).To("", serde.String, serde.String)
			},
			wantErr: []string{"sink-0001: invalid topic name \"\""},
		},
		{
			name: "source without key serde",
			topology: func(b *stream.Builder) {
				toOut(stream.From(b, "in", nilString, serde.String))
			},
			wantErr: []string{`source source-0000 (topic "in") has no key serde: pass one to stream.From`},
		},
		{
			name: "source without value serde",
			topology: func(b *stream.Builder) {
				toOut(stream.From(b, "in", serde.String, nilString, stream.Named("orders")))
			},
			wantErr: []string{`source orders (topic "in") has no value serde: pass one to stream.From`},
		},
		{
			name: "source without any serde",
			topology: func(b *stream.Builder) {
				stream.From(b, "in", nilString, nilInt).MapValues(func(int64) string { return "" }).To("out", serde.String, serde.String)
			},
			wantErr: []string{`source source-0000 (topic "in") has no key or value serde: pass one to stream.From`},
		},
		{
			name: "sink without key serde",
			topology: func(b *stream.Builder) {
				fromIn(b).To("out", nil, serde.String)
			},
			wantErr: []string{`sink sink-0001 (topic "out") has no key serde: pass one to To`},
		},
		{
			name: "sink without value serde",
			topology: func(b *stream.Builder) {
				fromIn(b).To("out", serde.String, nil, stream.Named("write"))
			},
			wantErr: []string{`sink write (topic "out") has no value serde: pass one to To`},
		},
		{
			name: "sink without any serde",
			topology: func(b *stream.Builder) {
				fromIn(b).To("out", nil, nil)
			},
			wantErr: []string{`sink sink-0001 (topic "out") has no key or value serde: pass one to To`},
		},
		{
			name:     "nil Filter predicate",
			topology: func(b *stream.Builder) { toOut(fromIn(b).Filter(nil)) },
			wantErr:  []string{"filter-0001: function is nil"},
		},
		{
			name:     "nil FilterNot predicate",
			topology: func(b *stream.Builder) { toOut(fromIn(b).FilterNot(nil, stream.Named("drop-junk"))) },
			wantErr:  []string{"drop-junk: function is nil"},
		},
		{
			name:     "nil Map function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).Map[string, string](nil)) },
			wantErr:  []string{"map-0001: function is nil"},
		},
		{
			name:     "nil MapValues function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).MapValues[string](nil)) },
			wantErr:  []string{"mapvalues-0001: function is nil"},
		},
		{
			name:     "nil SelectKey function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).SelectKey[string](nil)) },
			wantErr:  []string{"selectkey-0001: function is nil"},
		},
		{
			name:     "nil FlatMap function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).FlatMap[string, string](nil)) },
			wantErr:  []string{"flatmap-0001: function is nil"},
		},
		{
			name:     "nil FlatMapValues function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).FlatMapValues[string](nil)) },
			wantErr:  []string{"flatmapvalues-0001: function is nil"},
		},
		{
			name:     "nil Peek function",
			topology: func(b *stream.Builder) { toOut(fromIn(b).Peek(nil)) },
			wantErr:  []string{"peek-0001: function is nil"},
		},
		{
			name: "nil Process constructor",
			topology: func(b *stream.Builder) {
				toOut(fromIn(b).Process[string, string, stream.ProcessorFunc[string, string, string, string]](nil))
			},
			wantErr: []string{"process-0001: processor constructor is nil"},
		},
		{
			name: "Split branch without a name",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split([]stream.Branch[string, string]{
					{Name: "a", Pred: func(_, _ string) bool { return true }},
					{Pred: func(_, _ string) bool { return true }},
				}, stream.Named("route"))
				toOut(br[0])
				toOut(br[1])
			},
			wantErr: []string{`route: branch 1 needs a unique, non-empty name (got "")`},
		},
		{
			name: "Split branches with the same name",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split([]stream.Branch[string, string]{
					{Name: "a", Pred: func(_, _ string) bool { return true }},
					{Name: "a"},
				})
				toOut(br[0])
				toOut(br[1])
			},
			wantErr: []string{
				`split-0001: branch 1 needs a unique, non-empty name (got "a")`,
				// The branch nodes collide too.
				`name "split-0001-a" is used by two operators (branch and branch)`,
			},
		},
		{
			name: "Split default branch that is not last",
			topology: func(b *stream.Builder) {
				br := fromIn(b).Split([]stream.Branch[string, string]{
					{Name: "rest"},
					{Name: "a", Pred: func(_, _ string) bool { return true }},
				}, stream.Named("route"))
				toOut(br[0])
				toOut(br[1])
			},
			wantErr: []string{`route: branch "rest" has no predicate but is not the last branch`},
		},
		{
			name: "Split without branches",
			topology: func(b *stream.Builder) {
				require.Empty(t, fromIn(b).Split(nil, stream.Named("route")))
			},
			wantErr: []string{"route: no branches"},
		},
		{
			name: "merging streams from different builders",
			topology: func(b *stream.Builder) {
				other := stream.From(stream.NewBuilder("other"), "in2", serde.String, serde.String)
				toOut(fromIn(b).Merge(other, stream.Named("both")))
			},
			wantErr: []string{"both: merged streams come from different builders"},
		},
		{
			name: "a sub-topology writing a topic it reads",
			topology: func(b *stream.Builder) {
				fromIn(b).MapValues(strings.ToUpper).To("in", serde.String, serde.String)
			},
			wantErr: []string{`stream: cycle through topics: sub-topology 0 writes "in", read by sub-topology 0: records would be processed forever; write to a topic the topology does not read`},
		},
		{
			name: "a merged sub-topology writing one of its sources",
			topology: func(b *stream.Builder) {
				all := fromIn(b).Merge(stream.From(b, "feedback", serde.String, serde.String))
				toOut(all)
				all.Filter(func(_, v string) bool { return v != "" }).To("feedback", serde.String, serde.String)
			},
			wantErr: []string{`cycle through topics: sub-topology 0 writes "feedback", read by sub-topology 0`},
		},
		{
			name: "two sub-topologies feeding each other",
			topology: func(b *stream.Builder) {
				// A reads y and writes x; B reads x and writes y.
				stream.From(b, "y", serde.String, serde.String).To("x", serde.String, serde.String)
				stream.From(b, "x", serde.String, serde.String).To("y", serde.String, serde.String)
			},
			wantErr: []string{`stream: cycle through topics: sub-topology 0 writes "x", read by sub-topology 1; sub-topology 1 writes "y", read by sub-topology 0: records would be processed forever`},
		},
		{
			name: "a cycle of three sub-topologies after an acyclic one",
			topology: func(b *stream.Builder) {
				toOut(fromIn(b))
				stream.From(b, "a", serde.String, serde.String).To("b", serde.String, serde.String)
				stream.From(b, "b", serde.String, serde.String).To("c", serde.String, serde.String)
				stream.From(b, "c", serde.String, serde.String).To("a", serde.String, serde.String)
			},
			wantErr: []string{`sub-topology 1 writes "b", read by sub-topology 2; sub-topology 2 writes "c", read by sub-topology 3; sub-topology 3 writes "a", read by sub-topology 1`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			appID := tt.appID
			switch appID {
			case "":
				appID = "app"
			case "-empty-":
				appID = ""
			}
			b := stream.NewBuilder(appID, tt.opts...)
			tt.topology(b)
			topo, err := b.Build()
			require.Error(t, err)
			require.Nil(t, topo)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestBuildAcceptsValidTopologies(t *testing.T) {
	tests := []struct {
		name     string
		appID    string
		topology func(b *stream.Builder)
	}{
		{"app id with dots, dashes and underscores", "Team.app_v2-prod", func(b *stream.Builder) { toOut(fromIn(b)) }},
		{"source without operators", "app", func(b *stream.Builder) { fromIn(b) }},
		{"Split with a default last branch", "app", func(b *stream.Builder) {
			br := fromIn(b).Split([]stream.Branch[string, string]{{Name: "a", Pred: func(_, _ string) bool { return true }}, {Name: "rest"}})
			toOut(br[1])
		}},
		{"a chain of sub-topologies through topics", "app", func(b *stream.Builder) {
			fromIn(b).To("mid", serde.String, serde.String)
			toOut(stream.From(b, "mid", serde.String, serde.String))
		}},
		{"two sub-topologies writing the same topic", "app", func(b *stream.Builder) {
			toOut(fromIn(b))
			toOut(stream.From(b, "in2", serde.String, serde.String))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder(tt.appID)
			tt.topology(b)
			topo, err := b.Build()
			require.NoError(t, err)
			require.Equal(t, tt.appID, topo.AppID())
		})
	}
}

func TestBuildReportsEveryErrorAtOnce(t *testing.T) {
	b := stream.NewBuilder("bad app")
	s := stream.From[string, string](b, "in", serde.String, nil)
	s.Filter(nil, stream.Named("dup")).MapValues(strings.ToUpper, stream.Named("dup")).To("in", nil, serde.String)
	_, err := b.Build()
	require.Error(t, err)

	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined), "Build joins its errors with errors.Join")
	want := []string{
		`source source-0000 (topic "in") has no value serde`,
		"dup: function is nil",
		`sink sink-0003 (topic "in") has no key serde`,
		`app id "bad app"`,
		`name "dup" is used by two operators`,
		`cycle through topics: sub-topology 0 writes "in"`,
	}
	errs := joined.Unwrap()
	require.Len(t, errs, len(want), "%v", err)
	for i, w := range want {
		require.ErrorContains(t, errs[i], w)
	}
	// One problem per line, in the order they were found.
	require.Len(t, strings.Split(err.Error(), "\n"), len(want))
}

// shopTopology has two sub-topologies: orders and returns merged, split by
// size, the big ones written to a topic that a second sub-topology reads.
func shopTopology(opts ...stream.BuilderOption) *stream.Builder {
	b := stream.NewBuilder("shop", opts...)
	orders := stream.From(b, "orders", serde.String, serde.String, stream.Named("orders"))
	returns := stream.From(b, "returns", serde.String, serde.String)
	br := orders.Merge(returns.MapValues(strings.ToUpper), stream.Named("all")).
		Split([]stream.Branch[string, string]{
			{Name: "big", Pred: func(_, v string) bool { return len(v) > 3 }},
			{Name: "rest"},
		}, stream.Named("route"))
	br[0].To("big-orders", serde.String, serde.String, stream.Named("write-big"))
	br[1].To("small-orders", serde.String, serde.String)
	stream.From(b, "big-orders", serde.String, serde.String, stream.Named("big")).
		Filter(func(_, v string) bool { return v != "" }).
		To("alerts", serde.String, serde.String)
	return b
}

func TestDescribe(t *testing.T) {
	topo, err := shopTopology().Build()
	require.NoError(t, err)
	const want = `Topology: shop (errors: dlq)
  Sub-topology: 0
    Source: orders (topics: [orders])
      --> all
    Source: source-0001 (topics: [returns])
      --> mapvalues-0002
    Processor: mapvalues-0002 (mapvalues)
      --> all
      <-- source-0001
    Processor: all (merge)
      --> route
      <-- orders, mapvalues-0002
    Processor: route (split)
      --> route-big, route-rest
      <-- all
    Processor: route-big (branch)
      --> write-big
      <-- route
    Processor: route-rest (branch)
      --> sink-0008
      <-- route
    Sink: write-big (topic: big-orders)
      <-- route-big
    Sink: sink-0008 (topic: small-orders)
      <-- route-rest
  Sub-topology: 1
    Source: big (topics: [big-orders])
      --> filter-0010
    Processor: filter-0010 (filter)
      --> sink-0011
      <-- big
    Sink: sink-0011 (topic: alerts)
      <-- filter-0010
  Internal topics:
    shop-dlq (dlq)
`
	require.Equal(t, want, topo.Describe())

	t.Run("no internal topics without a DLQ", func(t *testing.T) {
		topo, err := shopTopology(stream.WithErrorPolicy(stream.OnErrorSkip)).Build()
		require.NoError(t, err)
		desc := topo.Describe()
		require.True(t, strings.HasPrefix(desc, "Topology: shop (errors: skip)\n  Sub-topology: 0\n"), desc)
		require.NotContains(t, desc, "Internal topics")
		require.True(t, strings.HasSuffix(desc, "    Sink: sink-0011 (topic: alerts)\n      <-- filter-0010\n"), desc)
	})
}

func TestSubtopologies(t *testing.T) {
	topo, err := shopTopology().Build()
	require.NoError(t, err)
	require.Equal(t, []topology.Subtopology{
		{ID: 0, SourceTopics: []string{"orders", "returns"}},
		{ID: 1, SourceTopics: []string{"big-orders"}},
	}, topo.Subtopologies())
	for topic, want := range map[string]int{"orders": 0, "returns": 0, "big-orders": 1} {
		sub, ok := topo.SubtopologyOf(topic)
		require.True(t, ok, topic)
		require.Equal(t, want, sub, topic)
	}
	_, ok := topo.SubtopologyOf("alerts")
	require.False(t, ok, "a topic only written is not a source")
	require.Equal(t, []string{"alerts", "big-orders", "small-orders"}, topo.SinkTopics())
	require.Equal(t, "shop", topo.AppID())
	require.Equal(t, stream.OnErrorDLQ, topo.ErrorPolicy())

	t.Run("numbered by first source; Merge joins later sources; topics in source order", func(t *testing.T) {
		b := stream.NewBuilder("app")
		a := stream.From(b, "a", serde.String, serde.String)
		toOut(stream.From(b, "b", serde.String, serde.String))
		c := stream.From(b, "c", serde.String, serde.String)
		d := stream.From(b, "d", serde.String, serde.String)
		// d is merged before a, but a is the older source.
		toOut(d.Merge(a).Merge(c))
		topo, err := b.Build()
		require.NoError(t, err)
		require.Equal(t, []topology.Subtopology{
			{ID: 0, SourceTopics: []string{"a", "c", "d"}},
			{ID: 1, SourceTopics: []string{"b"}},
		}, topo.Subtopologies())
		require.Equal(t, []string{"out"}, topo.SinkTopics(), "sink topics are deduplicated")
	})

	t.Run("a source without downstream operators is its own sub-topology", func(t *testing.T) {
		b := stream.NewBuilder("app")
		stream.From(b, "a", serde.String, serde.String)
		stream.From(b, "b", serde.String, serde.String)
		topo, err := b.Build()
		require.NoError(t, err)
		require.Equal(t, []topology.Subtopology{
			{ID: 0, SourceTopics: []string{"a"}},
			{ID: 1, SourceTopics: []string{"b"}},
		}, topo.Subtopologies())
		require.Empty(t, topo.SinkTopics())
	})
}

// A Topology is documented immutable and safe for concurrent use, so what
// its accessors return must not alias its state.
func TestSubtopologiesReturnsCopy(t *testing.T) {
	topo, err := shopTopology().Build()
	require.NoError(t, err)
	subs := topo.Subtopologies()
	subs[0].ID = 42
	subs[0].SourceTopics[0] = "mutated"
	again := topo.Subtopologies()
	require.Equal(t, 0, again[0].ID)
	require.Equal(t, []string{"orders", "returns"}, again[0].SourceTopics,
		"BUG: Topology.Subtopologies (topology.go) returns slices.Clone(t.subs), a shallow copy: a caller writing to SourceTopics mutates the immutable topology")
}

// A failed cross-builder Merge must not leave the other builder wired into
// a topology it does not know about.
func TestMergeAcrossBuildersLeavesOtherBuilderIntact(t *testing.T) {
	b1 := stream.NewBuilder("one")
	b2 := stream.NewBuilder("two")
	s2 := stream.From(b2, "in2", serde.String, serde.String)
	s2.To("out2", serde.String, serde.String)
	toOut(fromIn(b1).Merge(s2))
	_, err := b1.Build()
	require.ErrorContains(t, err, "merged streams come from different builders")

	topo2, err := b2.Build()
	if err != nil {
		// Reporting the misuse on both builders is fine too.
		require.ErrorContains(t, err, "different builders")
		return
	}
	d := streamtest.New(topo2)
	defer d.Close()
	pipe(t, d, rec("k", "v", 1).on("in2"))
	require.Equal(t, strs{o("k", "v", at(1))}, readStrings(t, d, "out2"))
	require.Zero(t, streamtest.Output(d, "out", serde.String, serde.String).Len(),
		"BUG: Stream.Merge (stream.go) appends the merge node to other's outlet and node children even when other comes from another builder, so builder two's topology builds without error and silently writes builder one's sink topic %q", "out")
	require.NotContains(t, topo2.Describe(), "merge-", "BUG: builder two's Describe shows builder one's merge node")
}

func TestNewTaskUnknownSubtopology(t *testing.T) {
	topo, err := shopTopology().Build()
	require.NoError(t, err)
	for _, id := range []int{-1, 2} {
		_, err := topo.NewTask(topology.TaskID{Subtopology: id}, topology.TaskConfig{})
		require.ErrorContains(t, err, "no sub-topology")
		require.ErrorContains(t, err, "(topology has 2)")
	}
}

// Under OnErrorDLQ every sub-topology writes `<app-id>-dlq`. A source reading
// that topic closes a cycle that Build's cycle check does not see: a record
// failing there is dead-lettered into the topic it came from, read again,
// fails again, forever (and the streamtest driver never returns from Pipe).
func TestBuildRejectsReadingItsOwnDLQ(t *testing.T) {
	b := stream.NewBuilder("app")
	stream.From(b, "app-dlq", serde.String, serde.JSON[Purchase]()).
		MapValues(func(p Purchase) string { return p.ID }).
		To("retried", serde.String, serde.String)
	topo, err := b.Build()
	if err == nil {
		// Show the loop on one task step rather than hanging the driver.
		tk, err := topo.NewTask(topology.TaskID{}, topology.TaskConfig{})
		require.NoError(t, err)
		defer tk.Close()
		out, err := tk.Process(kafkaRecord("app-dlq", 0, 0, "k", "{bad", at(1)), nil)
		require.NoError(t, err)
		require.Len(t, out, 1)
		_, isSource := topo.SubtopologyOf(out[0].Topic)
		t.Fatalf("BUG: Build (topology.go checkCycles) accepts a source on the topology's own DLQ under OnErrorDLQ; "+
			"a record failing there is dead-lettered to %q, which the topology reads (source: %v), so it is processed forever", out[0].Topic, isSource)
	}
	require.ErrorContains(t, err, "app-dlq")
}
