package stream_test

import (
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stringsTask returns a task of From("in").To("out") with String serdes,
// closed when t ends.
func stringsTask(t *testing.T) topology.Task {
	t.Helper()
	b := stream.NewBuilder("app")
	stream.From(b, "in", serde.String, serde.String).To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	tk, err := topo.NewTask(topology.TaskID{}, topology.TaskConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { tk.Close() })
	return tk
}

// A task carves new output records, and the bytes of their keys and
// values, until the runtime says it holds none of them (Recycle); then it
// reuses them (through pools that all tasks share), each record
// rewritten whole.
func TestOutputRecordsAreReusedAfterRecycle(t *testing.T) {
	tk := stringsTask(t)

	process := func(n int, headers []kgo.RecordHeader) []*kgo.Record {
		var outs []*kgo.Record
		for i := range n {
			rec := &kgo.Record{Topic: "in", Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"), Headers: headers}
			out, err := tk.Process(rec, nil)
			require.NoError(t, err)
			require.Len(t, out, 1)
			outs = append(outs, out[0])
		}
		return outs
	}
	first := process(300, []kgo.RecordHeader{{Key: "h", Value: []byte("1")}})
	for _, o := range first {
		o.Offset, o.Partition = 42, 3 // as franz-go sets them
	}
	held := map[*kgo.Record]bool{}
	for _, o := range first {
		held[o] = true
	}
	for _, o := range process(300, nil) {
		require.False(t, held[o], "a record still held by the runtime was reused")
		held[o] = true
	}
	for i, o := range first {
		require.Equal(t, "k"+strconv.Itoa(i), string(o.Key), "the memory of a held record's key was reused")
	}

	tk.(topology.Recycler).Recycle()
	reused := 0
	for i, o := range process(300, nil) {
		if held[o] {
			reused++
		}
		require.Equal(t, kgo.Record{Topic: "out", Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"), Timestamp: o.Timestamp}, *o)
	}
	// The slabs went to a pool shared by all tasks, which (under -race)
	// drops some of what it is given.
	require.Positive(t, reused, "after Recycle the records' memory is used again")
}

// An empty key or value encoded into the reused memory stays empty, not
// null: Kafka tells them apart.
func TestEmptyEncodingIsNotNull(t *testing.T) {
	out, err := stringsTask(t).Process(&kgo.Record{Topic: "in", Key: []byte{}, Value: []byte{}}, nil)
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.NotNil(t, out[0].Key, "an empty key must not become a null one")
	require.Empty(t, out[0].Key)
	require.NotNil(t, out[0].Value)
	require.Empty(t, out[0].Value)
}
