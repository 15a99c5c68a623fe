package txn

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
)

// latest keeps each key's last value in its store. The first record
// whose value is "hold" writes abortedValue instead, says so on entered
// and waits for release, inside its batch: the test makes that batch
// abort. Processed again, the record writes "hold".
type latest struct {
	store   *stream.KeyValueStore[string, string]
	holds   *atomic.Int32
	entered chan<- struct{}
	release <-chan struct{}
}

const abortedValue = "written by the batch that aborts"

func (l *latest) Process(ctx stream.ProcessorContext, rec stream.Record[string, string], out stream.Emitter[string, string]) error {
	kv := l.store.In(ctx)
	if rec.Value() == "hold" && l.holds.Add(1) == 1 {
		if err := kv.Put(rec.Key(), abortedValue); err != nil {
			return err
		}
		l.entered <- struct{}{}
		<-l.release
		return nil
	}
	return kv.Put(rec.Key(), rec.Value())
}

// A query never sees a batch's uncommitted writes: while a batch that
// wrote a key is open, a query of the key is not answered (one with a
// short deadline gives up); the batch aborts (its EndTxn fails), and the
// query waiting meanwhile gets the value the last committed batch left,
// before the batch is processed again; once that commits, queries see its
// value.
func TestQueryNeverSeesUncommittedWrites(t *testing.T) {
	kc, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(kc.Close)
	brokers := []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, brokers, 1, "in"))

	b := stream.NewBuilder("uncommitted")
	store := stream.NewKeyValueStore(b, "latest", serde.String, serde.String)
	var holds atomic.Int32
	entered, release := make(chan struct{}, 1), make(chan struct{})
	stream.From(b, "in", serde.String, serde.String).
		Process(func() *latest {
			return &latest{store: store, holds: &holds, entered: entered, release: release}
		}, stream.Named("latest"), stream.WithStores(store))
	topo, err := b.Build()
	require.NoError(t, err)
	var log txntest.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})
	w, err := NewWorker(topo, Config{Brokers: brokers, Instance: "w1", StateDir: t.TempDir(), SessionTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	produce := func(value string) {
		t.Helper()
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Key: []byte("k"), Value: []byte(value)}).FirstErr())
	}
	// waitValue waits until a query of k finds value.
	waitValue := func(value string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			res, err := w.QueryKey(ctx, "latest", "k")
			require.NoError(t, err)
			if res.Status == QueryFound && string(res.Value) == `"`+value+`"` {
				return
			}
			require.True(t, time.Now().Before(deadline), "the query still answers %+v", res)
			time.Sleep(10 * time.Millisecond) // polling the query's answer
		}
	}
	produce("v1")
	waitValue("v1")

	produce("hold")
	<-entered // the batch has written abortedValue, and is open
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	res, err := w.QueryKey(short, "latest", "k")
	cancelShort()
	require.ErrorIs(t, err, context.DeadlineExceeded, "answered mid-batch: %+v", res)
	waiting := make(chan QueryResult, 1)
	go func() {
		res, err := w.QueryKey(ctx, "latest", "k")
		if err != nil {
			res.Why = err.Error()
		}
		waiting <- res
	}()
	// Both queries are queued for the loop (the first, given up, is
	// skipped); then the batch's commit fails, and it aborts.
	require.Eventually(t, func() bool { return len(w.queries) == 2 }, time.Minute, time.Millisecond)
	h := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "uncommitted-w1",
		When: func(r kmsg.Request) bool { return r.(*kmsg.EndTxnRequest).Commit }})
	close(release)
	res = <-waiting
	require.Equal(t, QueryFound, res.Status, "%+v", res)
	require.JSONEq(t, `"v1"`, string(res.Value), "the aborted batch's write is gone, and the batch is not processed again yet")
	waitValue("hold")
	require.Equal(t, 1, h.Hits(), "the batch's commit failed once")
	require.Equal(t, int32(2), holds.Load(), "the aborted batch was processed again")
	require.Contains(t, log.String(), "transaction aborted", "the batch aborted")
}
