package stream_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

// Word count: GroupBy re-keys through a repartition topic, Count keeps a
// changelogged store, ToStream emits every new count.
func TestGroupByCount(t *testing.T) {
	b := stream.NewBuilder("wc")
	counts := stream.From(b, "lines", serde.String, serde.String).
		FlatMapValues(func(line string) []string { return strings.Fields(line) }).
		GroupBy("by-word", func(_, w string) string { return w }, serde.String, serde.String).
		Count("counts")
	counts.ToStream().To("word-counts", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	desc := topo.Describe()
	require.Contains(t, desc, "wc-by-word-repartition (repartition)")
	require.Contains(t, desc, "wc-counts-changelog (changelog)")
	require.Contains(t, desc, "(stores: [counts])")
	require.Len(t, topo.Subtopologies(), 2)

	d := streamtest.New(topo, streamtest.WithPartitions("lines", 4))
	defer d.Close()
	in := streamtest.Input(d, "lines", serde.String, serde.String)
	require.NoError(t, in.Pipe("1", "to be or not to be", epoch))
	require.NoError(t, in.Pipe("2", "be quick", epoch))
	out, err := streamtest.Output(d, "word-counts", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	last := map[string]int64{}
	for _, r := range out {
		last[r.Key] = r.Value
	}
	want := map[string]int64{"to": 2, "be": 3, "or": 1, "not": 1, "quick": 1}
	require.Equal(t, want, last)
	require.Len(t, out, 8, "one update per word")

	repart, err := streamtest.Output(d, "wc-by-word-repartition", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, repart, 8)
	part := map[string]int32{}
	for _, r := range repart {
		if p, ok := part[r.Key]; ok {
			require.Equal(t, p, r.Partition, "one word, one partition")
		}
		part[r.Key] = r.Partition
	}
}

func TestAggregateAndReduce(t *testing.T) {
	b := stream.NewBuilder("agg")
	grouped := stream.From(b, "amounts", serde.String, serde.Int64).GroupByKey(serde.String, serde.Int64)
	grouped.Aggregate("bars", func() string { return "" }, func(_ string, v int64, agg string) string {
		return agg + strings.Repeat("+", int(v))
	}, serde.String).ToStream().To("bars", serde.String, serde.String)
	grouped.Reduce("maxes", func(agg, v int64) int64 { return max(agg, v) }).
		ToStream().To("maxes", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	require.NotContains(t, topo.Describe(), "repartition", "GroupByKey on an unchanged key needs none")

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "amounts", serde.String, serde.Int64)
	for _, v := range []int64{2, 5, 1} {
		require.NoError(t, in.Pipe("k", v, epoch))
	}
	bars, err := streamtest.Output(d, "bars", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Equal(t, "++++++++", bars[len(bars)-1].Value)
	maxes, err := streamtest.Output(d, "maxes", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	var got []int64
	for _, r := range maxes {
		got = append(got, r.Value)
	}
	require.Equal(t, []int64{2, 5, 5}, got)
}

type customer struct {
	Name string `json:"name"`
}

// A stream joins a table read from a topic: the table is the latest value
// per key, a null deletes it; Join drops misses, LeftJoin reports them.
func TestTableJoins(t *testing.T) {
	b := stream.NewBuilder("shop")
	customers := stream.FromTable(b, "customers", serde.String, serde.JSON[customer]())
	orders := stream.From(b, "orders", serde.String, serde.Int64)
	orders.Join(customers, func(id string, cents int64, c customer) string {
		return c.Name + " pays " + id
	}).To("joined", serde.String, serde.String)
	orders.LeftJoin(customers, func(id string, cents int64, c customer, found bool) string {
		if !found {
			return "unknown " + id
		}
		return c.Name
	}).To("left", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	require.Len(t, topo.Subtopologies(), 1, "a join puts the stream and the table in one sub-topology")
	require.NotContains(t, topo.Describe(), "shop-customers-changelog", "the topic is its own changelog")
	require.Regexp(t, `Processor: \S+ \(leftjoin\) \(stores: \[customers\]\)`, topo.Describe(), "a join lists the table's store")

	d := streamtest.New(topo, streamtest.WithPartitions("customers", 2), streamtest.WithPartitions("orders", 2))
	defer d.Close()
	cin := streamtest.Input(d, "customers", serde.String, serde.JSON[customer]())
	oin := streamtest.Input(d, "orders", serde.String, serde.Int64)
	require.NoError(t, cin.Pipe("c1", customer{Name: "Ada"}, epoch))
	require.NoError(t, oin.Pipe("c1", 100, epoch))
	require.NoError(t, oin.Pipe("c2", 200, epoch))
	require.NoError(t, cin.Pipe("c1", customer{Name: "Ada L."}, epoch))
	require.NoError(t, oin.Pipe("c1", 300, epoch))
	require.NoError(t, d.PipeBytes("customers", []byte("c1"), nil, epoch)) // tombstone
	require.NoError(t, oin.Pipe("c1", 400, epoch))

	values := func(topic string) []string {
		recs, err := streamtest.Output(d, topic, serde.String, serde.String).ReadAll()
		require.NoError(t, err)
		var vs []string
		for _, r := range recs {
			vs = append(vs, r.Value)
		}
		return vs
	}
	require.Equal(t, []string{"Ada pays c1", "Ada L. pays c1"}, values("joined"))
	require.Equal(t, []string{"Ada", "unknown c2", "Ada L.", "unknown c1"}, values("left"))
}

func TestStatefulDSLValidation(t *testing.T) {
	cases := map[string]struct {
		build func(b *stream.Builder)
		want  string
	}{
		"GroupBy without a name": {
			build: func(b *stream.Builder) {
				stream.From(b, "in", serde.String, serde.String).
					GroupBy("", func(k, _ string) string { return k }, serde.String, serde.String).Count("c")
			},
			want: "GroupBy needs a name",
		},
		"Count without a name": {
			build: func(b *stream.Builder) {
				stream.From(b, "in", serde.String, serde.String).GroupByKey(serde.String, serde.String).Count("")
			},
			want: "count needs a name",
		},
		"GroupByKey after a re-key without a name": {
			build: func(b *stream.Builder) {
				stream.From(b, "in", serde.String, serde.String).
					SelectKey(func(_, v string) string { return v }).
					GroupByKey(serde.String, serde.String).Count("c")
			},
			want: "GroupByKey after selectkey-0001, which may change keys, repartitions",
		},
		"Join after a re-key": {
			build: func(b *stream.Builder) {
				tbl := stream.FromTable(b, "t", serde.String, serde.String)
				stream.From(b, "in", serde.String, serde.String).
					SelectKey(func(_, v string) string { return v }).
					Join(tbl, func(_, v, tv string) string { return v + tv }).
					To("out", serde.String, serde.String)
			},
			want: "join after selectkey-0002, which may change keys: call Repartition",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			b := stream.NewBuilder("app")
			tc.build(b)
			_, err := b.Build()
			require.ErrorContains(t, err, tc.want)
		})
	}
}
