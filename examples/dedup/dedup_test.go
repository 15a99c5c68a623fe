package dedup_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/examples/dedup"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// The first event of an id is copied unchanged (key, value, headers,
// timestamp; a null key stays null), its repeats within the window are
// dropped whatever their key, ids may be numbers, and values that are not
// JSON objects with the id field go to the DLQ.
func TestDedupApp(t *testing.T) {
	topo, err := dedup.Build("dd", "events", "events-unique", "event_id", time.Hour)
	require.NoError(t, err)
	d := streamtest.New(topo, streamtest.WithPartitions("events", 4))
	defer d.Close()
	in := streamtest.Input(d, "events", serde.Bytes, serde.Bytes)
	pipe := func(key []byte, value string, ts time.Time, headers ...string) {
		t.Helper()
		r := stream.NewRecord(key, []byte(value), ts)
		for i := 0; i+1 < len(headers); i += 2 {
			r = r.WithHeader(headers[i], []byte(headers[i+1]))
		}
		require.NoError(t, in.PipeRecord(r))
	}
	pipe([]byte("k1"), `{"event_id":"a","n":1}`, t0, "h", "x")
	pipe([]byte("k2"), `{"event_id":"a","n":2}`, t0.Add(time.Minute)) // a repeat under another key
	pipe(nil, `{"event_id":7}`, t0.Add(2*time.Minute))
	pipe([]byte("k3"), `{"event_id":7}`, t0.Add(3*time.Minute))
	pipe([]byte("k4"), `not json`, t0)
	pipe([]byte("k5"), `{"id":"b"}`, t0)
	pipe([]byte("k6"), `{"event_id":"a"}`, t0.Add(61*time.Minute)) // past the window: new

	out, err := streamtest.Output(d, "events-unique", serde.Bytes, serde.Bytes).ReadAll()
	require.NoError(t, err)
	require.Len(t, out, 3)
	require.Equal(t, "k1", string(out[0].Key))
	require.JSONEq(t, `{"event_id":"a","n":1}`, string(out[0].Value))
	require.True(t, out[0].Timestamp.Equal(t0))
	require.Equal(t, []streamtest.Header{{Key: "h", Value: "x"}}, out[0].Headers)
	require.Nil(t, out[1].Key, "a null key stays null")
	require.Equal(t, `{"event_id":7}`, string(out[1].Value))
	require.Equal(t, "k6", string(out[2].Key))
	require.Equal(t, int64(2), d.Stats().Duplicates)

	dlq, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dlq, 2)
	require.Equal(t, "k4", string(dlq[0].Key))
	require.Equal(t, "k5", string(dlq[1].Key))
}
