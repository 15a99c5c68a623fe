package streamtest_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func build(t *testing.T, b *stream.Builder) *stream.Topology {
	t.Helper()
	topo, err := b.Build()
	require.NoError(t, err)
	return topo
}

// Records written to a topic the topology reads are fed to the downstream
// sub-topology before Pipe returns, with partition and offset assigned.
func TestDriverFeedsThroughTopics(t *testing.T) {
	b := stream.NewBuilder("chain")
	stream.From(b, "a", serde.String, serde.String).
		MapValues(func(v string) string { return v + "+1" }).
		To("b", serde.String, serde.String)
	stream.From(b, "b", serde.String, serde.String).
		MapValues(func(v string) string { return v + "+2" }).
		To("c", serde.String, serde.String)
	topo := build(t, b)
	require.Len(t, topo.Subtopologies(), 2)

	d := streamtest.New(topo, streamtest.WithPartitions("b", 4))
	defer d.Close()
	in := streamtest.Input(d, "a", serde.String, serde.String)
	for _, k := range []string{"x", "y", "x"} {
		require.NoError(t, in.Pipe(k, k, t0))
	}
	mid, err := streamtest.Output(d, "b", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Len(t, mid, 3)
	require.Equal(t, mid[0].Partition, mid[2].Partition, "same key, same partition")
	require.Equal(t, int64(1), mid[2].Offset-mid[0].Offset, "offsets are per partition")

	out, err := streamtest.Output(d, "c", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	var got []string
	for _, r := range out {
		got = append(got, r.Key+"="+r.Value)
		require.Equal(t, t0, r.Timestamp)
	}
	require.Equal(t, []string{"x=x+1+2", "y=y+1+2", "x=x+1+2"}, got)
	require.Equal(t, int64(6), d.Stats().Processed)
}

// Read consumes as it yields; breaking out leaves the rest unread, and a
// record that does not decode stays unread.
func TestOutputReadConsumes(t *testing.T) {
	b := stream.NewBuilder("read")
	stream.From(b, "in", serde.String, serde.String).To("out", serde.String, serde.String)
	d := streamtest.New(build(t, b))
	defer d.Close()
	in := streamtest.Input(d, "in", serde.String, serde.String)
	require.NoError(t, in.Pipe("k", "1", t0))
	require.NoError(t, d.PipeBytes("in", []byte("k"), []byte("not-a-number"), t0))
	require.NoError(t, in.Pipe("k", "3", t0))

	out := streamtest.Output(d, "out", serde.String, serde.String)
	for _, err := range out.Read() {
		require.NoError(t, err)
		break
	}
	require.Equal(t, 2, out.Len())

	ints := streamtest.Output(d, "out", serde.String, serde.JSON[int]())
	recs, err := ints.ReadAll()
	require.Error(t, err)
	require.Contains(t, err.Error(), "out[0]@1 value")
	require.Empty(t, recs)
	require.Equal(t, 2, out.Len(), "the bad record is not consumed")
}

type clockProbe struct{}

func (clockProbe) Process(ctx stream.ProcessorContext, rec stream.Record[string, string], out stream.Emitter[string, string]) error {
	return out.Emit(rec.WithValue(ctx.Now().Format(time.RFC3339) + " " + ctx.StreamTime().Format(time.RFC3339)))
}

// Processors see the injected wall clock, which moves only when told, and
// the stream time, which follows record timestamps.
func TestDriverClock(t *testing.T) {
	b := stream.NewBuilder("clock")
	stream.From(b, "in", serde.String, serde.String).
		Process(func() clockProbe { return clockProbe{} }).
		To("out", serde.String, serde.String)
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d := streamtest.New(build(t, b), streamtest.WithWallClock(wall))
	defer d.Close()
	in := streamtest.Input(d, "in", serde.String, serde.String)
	require.NoError(t, in.Pipe("k", "", t0))
	d.AdvanceWallClock(time.Hour)
	require.NoError(t, in.Pipe("k", "", t0.Add(-time.Minute))) // late: stream time stays
	recs, err := streamtest.Output(d, "out", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	require.Equal(t, "2030-01-01T00:00:00Z 2026-11-25T12:00:00Z", recs[0].Value)
	require.Equal(t, "2030-01-01T01:00:00Z 2026-11-25T12:00:00Z", recs[1].Value)
}

func TestDriverRejectsUnknownTopic(t *testing.T) {
	b := stream.NewBuilder("x")
	stream.From(b, "in", serde.String, serde.String).To("out", serde.String, serde.String)
	d := streamtest.New(build(t, b))
	defer d.Close()
	err := d.PipeBytes("nope", nil, nil, t0)
	require.ErrorContains(t, err, `topic "nope" is not read by the topology`)
}

// A Pipe that fails aborts its batch: what it wrote before the failure,
// here to the topic between two sub-topologies, is never read, as a
// read_committed reader never sees an aborted transaction; the next Pipe
// goes on from there.
func TestFailedPipeWritesNothing(t *testing.T) {
	b := stream.NewBuilder("abort", stream.WithErrorPolicy(stream.OnErrorFail))
	stream.From(b, "a", serde.String, serde.String).To("b", serde.String, serde.String)
	stream.From(b, "b", serde.String, serde.Int64).To("c", serde.String, serde.Int64)
	d := streamtest.New(build(t, b))
	defer d.Close()
	in := streamtest.Input(d, "a", serde.String, serde.String)
	mid := streamtest.Output(d, "b", serde.String, serde.String)
	out := streamtest.Output(d, "c", serde.String, serde.Int64)

	require.NoError(t, in.Pipe("k", "\x00\x00\x00\x00\x00\x00\x00\x07", t0), "eight bytes decode as an Int64")
	require.Equal(t, 1, mid.Len())
	require.Equal(t, 1, out.Len())

	require.Error(t, in.Pipe("k", "not eight bytes", t0), "b's value does not decode")
	require.Equal(t, 1, mid.Len(), "the aborted batch's write to b is not read")
	require.Equal(t, 1, out.Len())

	require.NoError(t, in.Pipe("k", "\x00\x00\x00\x00\x00\x00\x00\x08", t0))
	recs, err := mid.ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, int64(2), recs[1].Offset-recs[0].Offset, "the aborted record's offset stays taken")
}
