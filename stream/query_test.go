package stream_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
)

// queryBuilder counts the records of each key, in all and per tumbling
// minute (windows close an hour late: a closed window leaves the store),
// and keeps the last amount of each order id (an int64 key) in a table.
func queryBuilder() *stream.Builder {
	b := stream.NewBuilder("app")
	in := stream.From(b, "in", serde.String, serde.Int64)
	in.GroupByKey(serde.String, serde.Int64).Count("counts").ToStream().To("out", serde.String, serde.Int64)
	stream.WindowedBy(in.GroupByKey(serde.String, serde.Int64), window.Tumbling{Size: time.Minute, Grace: time.Hour}).Count("per-minute")
	stream.FromTable(b, "amounts", serde.Int64, serde.Int64)
	return b
}

func int64Bytes(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// The key-value and tumbling window stores are queryable, each in its
// sub-topology, and read their keys' text with their key serde.
func TestQueryableStores(t *testing.T) {
	topo, err := queryBuilder().Build()
	require.NoError(t, err)
	qs := topo.QueryableStores()
	names := make([]string, len(qs))
	for i, s := range qs {
		names[i] = s.Name
	}
	require.Equal(t, []string{"amounts", "counts", "per-minute"}, names)
	require.Equal(t, topology.KeyValueStore, qs[0].Kind)
	require.Equal(t, topology.KeyValueStore, qs[1].Kind)
	require.Equal(t, topology.WindowStore, qs[2].Kind)
	require.Equal(t, qs[1].Subtopology, qs[2].Subtopology, "both read in")
	require.NotEqual(t, qs[0].Subtopology, qs[1].Subtopology)

	k, err := qs[1].Key("k/1 é")
	require.NoError(t, err)
	require.Equal(t, []byte("k/1 é"), k, "a string key is its text")
	k, err = qs[0].Key("-42")
	require.NoError(t, err)
	require.Equal(t, int64Bytes(-42), k, "an int64 key is a decimal")
	_, err = qs[0].Key("forty-two")
	require.ErrorContains(t, err, "int64")
}

// A task answers from its committed state only: while a record's writes
// are pending it refuses; after Discard it answers the last committed
// value; after Commit the new one. Window stores answer the windows of
// the range, and a store of the wrong kind or unknown is an error.
func TestTaskAnswersFromCommittedState(t *testing.T) {
	tk := newTask(t, queryBuilder(), topology.TaskID{Subtopology: 0}, topology.TaskConfig{})
	st := tk.(topology.StatefulTask)
	r := tk.(topology.StoreReader)
	minute := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	process := func(offset int64, key string, ts time.Time) {
		t.Helper()
		_, err := tk.Process(&kgo.Record{Topic: "in", Offset: offset, Key: []byte(key), Value: int64Bytes(1), Timestamp: ts}, nil)
		require.NoError(t, err)
	}

	_, found, err := r.Get("counts", []byte("a"))
	require.NoError(t, err)
	require.False(t, found, "no record yet")

	process(0, "a", minute)
	_, _, err = r.Get("counts", []byte("a"))
	require.ErrorContains(t, err, "uncommitted writes", "a query never reads pending writes")
	_, err = r.Windows("per-minute", []byte("a"), minute, minute.Add(time.Hour))
	require.ErrorContains(t, err, "uncommitted writes")
	require.NoError(t, st.Discard())
	_, found, err = r.Get("counts", []byte("a"))
	require.NoError(t, err)
	require.False(t, found, "the discarded write is gone")

	process(0, "a", minute)
	process(1, "a", minute.Add(30*time.Second))
	process(2, "ab", minute.Add(time.Minute)) // a key with a's bytes first
	process(3, "a", minute.Add(time.Minute))
	require.NoError(t, st.Commit())
	v, found, err := r.Get("counts", []byte("a"))
	require.NoError(t, err)
	require.True(t, found)
	require.JSONEq(t, "3", string(v))

	ws, err := r.Windows("per-minute", []byte("a"), minute, minute.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, ws, 2)
	require.Equal(t, minute, ws[0].Start.UTC())
	require.Equal(t, minute.Add(time.Minute), ws[0].End.UTC())
	require.JSONEq(t, "2", string(ws[0].Value))
	require.Equal(t, minute.Add(time.Minute), ws[1].Start.UTC())
	require.JSONEq(t, "1", string(ws[1].Value))
	ws, err = r.Windows("per-minute", []byte("a"), minute.Add(time.Second), minute.Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, ws, "[from, to) by window start")

	_, _, err = r.Get("per-minute", []byte("a"))
	require.ErrorContains(t, err, "not a queryable key-value store")
	_, err = r.Windows("counts", []byte("a"), minute, minute.Add(time.Hour))
	require.ErrorContains(t, err, "not a queryable window store")
	_, _, err = r.Get("amounts", int64Bytes(1))
	require.ErrorContains(t, err, "has no store amounts", "another sub-topology's")
}
