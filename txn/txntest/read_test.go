package txntest

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/broker"
)

// tableKeys is how many keys writeTable commits.
const tableKeys = 2000

// writeTable starts the embedded broker with a 4-partition topic "table"
// holding, committed in transactions of 100 records, key "k<i>" with the
// int64 value i for every i in [0, tableKeys), then a transaction left
// open with a record for every one of those keys (value -1): the
// read_committed end of each partition is behind its high watermark.
func writeTable(ctx context.Context, t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := []string{addr}
	require.NoError(t, broker.CreateTopics(ctx, brokers, 4, "table"))
	// The open transaction outlives the test: the broker does not abort it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("table"), kgo.DefaultProduceTopic("table"),
		kgo.TransactionTimeout(5*time.Minute))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	value := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	for from := int64(0); from <= tableKeys; from += 100 {
		require.NoError(t, cl.BeginTransaction())
		for i := from; i < min(from+100, tableKeys); i++ {
			cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: value(i)}, nil)
		}
		if from == tableKeys {
			for i := range int64(tableKeys) {
				cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: value(-1)}, nil)
			}
		}
		require.NoError(t, cl.Flush(ctx))
		if from == tableKeys {
			break // left open
		}
		require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
	}
	return c, brokers
}

// holdLargeFetches makes the broker answer the read_committed fetches of
// LargeFetches readers (those that ask for more than a byte of a
// partition) only once hold returns: the first one only, or all with
// every.
func holdLargeFetches(c *kfake.Cluster, every bool, hold func()) {
	var held atomic.Bool
	c.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !large(req.(*kmsg.FetchRequest)) || (!every && held.Swap(true)) {
			return nil, nil, false
		}
		c.SleepControl(hold)
		return nil, nil, false
	})
}

func large(req *kmsg.FetchRequest) bool {
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if p.PartitionMaxBytes > SmallFetches.PartitionMaxBytes {
				return true
			}
		}
	}
	return false
}

// A reader whose first fetch is answered after more than a second of
// quiet (a loaded machine) still reads the whole table: it reads up to
// the read_committed end it listed, and so agrees with the reader whose
// fetches are answered at once. It does not wait for the transaction left
// open: that end is the last stable offset, not the high watermark.
func TestReadTableReadsUpToTheCommittedEndThroughASlowFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, brokers := writeTable(ctx, t)
	// Fault injection, not synchronisation: a broker this slow to answer.
	holdLargeFetches(c, false, func() { time.Sleep(3 * time.Second) })

	// Long enough for both readers, far shorter than the open transaction.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	table, err := ReadTable(rctx, brokers, "table")
	require.NoError(t, err)
	want := map[string]int64{}
	for i := range int64(tableKeys) {
		want[fmt.Sprintf("k%d", i)] = i
	}
	require.Equal(t, want, table)
}

// A reader that cannot read up to the read_committed end before its
// context ends says so, rather than return what it read as all there is.
func TestReadCommittedFailsWhenTheEndIsNotReached(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, brokers := writeTable(ctx, t)
	stop := make(chan struct{})
	defer close(stop)
	holdLargeFetches(c, true, func() { <-stop })

	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	var n int
	err := ReadCommitted(rctx, brokers, "table", func(*kgo.Record) { n++ }, func() bool { return true })
	require.ErrorContains(t, err, "txntest: table: read_committed end not reached in 4 partitions")
	require.ErrorContains(t, err, "read up to offset 0 of ")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, n)
}
