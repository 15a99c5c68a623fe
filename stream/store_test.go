package stream_test

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

// summer keeps a running sum per key; a negative amount fails after the
// store was written, which must leave no trace.
type summer struct {
	sums *stream.KeyValueStore[string, int64]
}

func (s summer) Process(ctx stream.ProcessorContext, rec stream.Record[string, int64], out stream.Emitter[string, int64]) error {
	kv := s.sums.In(ctx)
	sum, _, err := kv.Get(rec.Key())
	if err != nil {
		return err
	}
	sum += rec.Value()
	if err := kv.Put(rec.Key(), sum); err != nil {
		return err
	}
	if rec.Value() < 0 {
		return errors.New("negative amount")
	}
	return out.Emit(rec.WithValue(sum))
}

func sumTopology(t *testing.T, opts ...stream.BuilderOption) (*stream.Topology, *stream.KeyValueStore[string, int64]) {
	t.Helper()
	b := stream.NewBuilder("sums", opts...)
	sums := stream.NewKeyValueStore(b, "sums", serde.String, serde.Int64)
	stream.From(b, "amounts", serde.String, serde.Int64).
		Process(func() summer { return summer{sums: sums} }, stream.Named("sum"), stream.WithStores(sums)).
		To("totals", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	return topo, sums
}

// A store keeps state per key across records and partitions; its writes
// are changelogged to `<app>-<store>-changelog` on the task's partition; a
// failing record's writes are rolled back with its outputs.
func TestKeyValueStoreInProcessor(t *testing.T) {
	topo, sums := sumTopology(t)
	require.Contains(t, topo.Describe(), "sums-sums-changelog (changelog)")
	d := streamtest.New(topo, streamtest.WithPartitions("amounts", 3), streamtest.WithPartitions("totals", 3))
	defer d.Close()
	in := streamtest.Input(d, "amounts", serde.String, serde.Int64)
	for _, r := range []struct {
		k string
		v int64
	}{{"a", 1}, {"b", 10}, {"a", 2}, {"a", -100}, {"b", 5}} {
		require.NoError(t, in.Pipe(r.k, r.v, epoch))
	}
	totals, err := streamtest.Output(d, "totals", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	var got []int64
	for _, r := range totals {
		got = append(got, r.Value)
	}
	require.Equal(t, []int64{1, 10, 3, 15}, got)

	contents, err := streamtest.KeyValues(d, sums)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"a": 3, "b": 15}, contents, "the failed record's Put is rolled back")

	dead, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dead, 1)

	changelog, err := streamtest.Output(d, "sums-sums-changelog", serde.String, serde.Int64).ReadAll()
	require.NoError(t, err)
	require.Len(t, changelog, 4, "one changelog record per committed Put")
	for _, r := range changelog {
		var src int32 = -1
		for _, o := range totals {
			if o.Key == r.Key {
				src = o.Partition
			}
		}
		require.Equal(t, src, r.Partition, "a changelog record goes to its task's partition")
	}
}

// Under the fail policy a failed Pipe aborts its batch, as the runtime
// aborts its transaction: the tasks discard their pending state and go on
// from the last committed one.
func TestFailedPipeLeavesTheLastCommittedState(t *testing.T) {
	topo, sums := sumTopology(t, stream.WithErrorPolicy(stream.OnErrorFail))
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "amounts", serde.String, serde.Int64)
	require.NoError(t, in.Pipe("a", 5, epoch))
	require.Error(t, in.Pipe("a", -1, epoch))
	require.NoError(t, in.Pipe("a", 1, epoch))
	contents, err := streamtest.KeyValues(d, sums)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"a": 6}, contents)
}

func TestStoreValidation(t *testing.T) {
	cases := map[string]struct {
		build func(b *stream.Builder)
		want  string
	}{
		"unnamed stateful operator": {
			build: func(b *stream.Builder) {
				s := stream.NewKeyValueStore(b, "st", serde.String, serde.Int64)
				stream.From(b, "in", serde.String, serde.Int64).
					Process(func() summer { return summer{sums: s} }, stream.WithStores(s))
			},
			want: "operator process-0001 uses stores [st] but has no name",
		},
		"unused store": {
			build: func(b *stream.Builder) {
				stream.NewKeyValueStore(b, "lonely", serde.String, serde.Int64)
				stream.From(b, "in", serde.String, serde.Int64).To("out", serde.String, serde.Int64)
			},
			want: `store "lonely" is used by no operator`,
		},
		"duplicate store names": {
			build: func(b *stream.Builder) {
				s1 := stream.NewKeyValueStore(b, "st", serde.String, serde.Int64)
				s2 := stream.NewKeyValueStore(b, "st", serde.String, serde.Int64)
				stream.From(b, "in", serde.String, serde.Int64).
					Process(func() summer { return summer{sums: s1} }, stream.Named("p"), stream.WithStores(s1, s2))
			},
			want: `two stores are named "st"`,
		},
		"store across sub-topologies": {
			build: func(b *stream.Builder) {
				s := stream.NewKeyValueStore(b, "st", serde.String, serde.Int64)
				stream.From(b, "in1", serde.String, serde.Int64).
					Process(func() summer { return summer{sums: s} }, stream.Named("p1"), stream.WithStores(s))
				stream.From(b, "in2", serde.String, serde.Int64).
					Process(func() summer { return summer{sums: s} }, stream.Named("p2"), stream.WithStores(s))
			},
			want: `store "st" is used by p1 (sub-topology 0) and p2 (sub-topology 1)`,
		},
		"store without serde": {
			build: func(b *stream.Builder) {
				s := stream.NewKeyValueStore[string, int64](b, "st", serde.String, nil)
				stream.From(b, "in", serde.String, serde.Int64).
					Process(func() summer { return summer{sums: s} }, stream.Named("p"), stream.WithStores(s))
			},
			want: `store "st" has no value serde`,
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
