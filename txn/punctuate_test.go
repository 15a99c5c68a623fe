package txn_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
)

// tickTopology's task counts, in its store, the firings of a wall-clock
// punctuator (every 20 ms) and emits each count to "out"; its input only
// opens the task.
func tickTopology(t *testing.T) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder("tick")
	ticks := stream.NewKeyValueStore(b, "ticks", serde.String, serde.Int64)
	stream.From(b, "in", serde.String, serde.String).
		Process(func() *wallTicker { return &wallTicker{ticks: ticks} }, stream.Named("ticker"), stream.WithStores(ticks)).
		To("out", serde.String, serde.Int64)
	topo, err := b.Build()
	require.NoError(t, err)
	return topo
}

type wallTicker struct {
	ticks *stream.KeyValueStore[string, int64]
}

func (w *wallTicker) Init(ctx stream.ProcessorContext) error {
	_, err := stream.Schedule(ctx, 20*time.Millisecond, stream.WallClock, func(now time.Time, out stream.Emitter[string, int64]) error {
		kv := w.ticks.In(ctx)
		n, _, err := kv.Get("n")
		if err != nil {
			return err
		}
		if err := kv.Put("n", n+1); err != nil {
			return err
		}
		return out.Emit(stream.NewRecord("tick", n+1, now))
	})
	return err
}

func (w *wallTicker) Process(stream.ProcessorContext, stream.Record[string, string], stream.Emitter[string, int64]) error {
	return nil
}

// With no input after the one record that opens its task, a wall-clock
// punctuator fires in transactions of its own: each count it emits and
// stores is committed exactly once. The commit of one of those
// transactions fails (EndTxn answered UNKNOWN_SERVER_ERROR, so that it is
// aborted): its count is in the log, yet no read_committed reader sees it,
// and the store's write went with it, so the count is emitted again,
// committed, with no gap and no duplicate.
func TestWallClockPunctuationCommittedOnceWithoutInput(t *testing.T) {
	b, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	c := &cluster{t: t, brokers: []string{addr}}
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 1, "in", "out"))
	var commits atomic.Int64
	h := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "tick-w1", Err: kerr.UnknownServerError,
		When: func(r kmsg.Request) bool {
			// The fifth commit: past the one that processed the input.
			return r.(*kmsg.EndTxnRequest).Commit && commits.Add(1) == 5
		}})
	ws := c.workers(tickTopology(t), txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir()})
	ws.start("w1")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.ProduceSync(c.ctx(30*time.Second), &kgo.Record{Topic: "in", Value: []byte("open")}).FirstErr())

	// Wait until the fault fired and ten counts were committed.
	committed := readTicks(t, c, kgo.ReadCommitted(), func(got []int64) bool { return h.Hits() == 1 && len(got) >= 10 })
	ws.halt("w1")
	ws.requireNoErrors()

	committed = readTicks(t, c, kgo.ReadCommitted(), nil)
	require.GreaterOrEqual(t, len(committed), 10)
	for i, n := range committed {
		require.Equal(t, int64(i+1), n, "count %d committed once, in order: %v", i+1, committed)
	}
	all := readTicks(t, c, kgo.ReadUncommitted(), nil)
	seen := map[int64]int{}
	aborted := false
	for _, n := range all {
		if seen[n]++; seen[n] > 1 {
			aborted = true
		}
	}
	require.True(t, aborted, "the aborted transaction's count is in the log: %v", all)
}

// Without transactions, the plain loops run wall-clock punctuators too,
// with no input arriving.
func TestWallClockPunctuationAtLeastOnce(t *testing.T) {
	c := newCluster(t, 1, "in", "out")
	ws := c.workers(tickTopology(t), txn.Config{Guarantee: txn.AtLeastOnce, SessionTimeout: 3 * time.Second, StateDir: t.TempDir()})
	ws.start("w1")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.ProduceSync(c.ctx(30*time.Second), &kgo.Record{Topic: "in", Value: []byte("open")}).FirstErr())
	got := readTicks(t, c, kgo.ReadCommitted(), func(got []int64) bool { return len(got) >= 5 })
	ws.halt("w1")
	ws.requireNoErrors()
	require.Equal(t, []int64{1, 2, 3, 4, 5}, got[:5])
}

// readTicks reads "out" from the start with isolation until enough
// reports true for what it read (nil: until a whole second passes with
// nothing new), within a minute.
func readTicks(t *testing.T, c *cluster, isolation kgo.IsolationLevel, enough func([]int64) bool) []int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics("out"),
		kgo.FetchIsolationLevel(isolation), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx := c.ctx(time.Minute)
	var got []int64
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		f := cl.PollFetches(pctx)
		cancel()
		require.NoError(t, ctx.Err(), "read %v", got)
		f.EachRecord(func(r *kgo.Record) {
			n, err := serde.Int64.Decode(r.Value)
			require.NoError(t, err)
			got = append(got, n)
		})
		if enough != nil && enough(got) || enough == nil && f.NumRecords() == 0 {
			return got
		}
	}
}
