package broker

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A read_committed reader whose fetches are cut partway through a
// partition never receives an aborted record: one aborted transaction of 8
// single-record batches, then a committed one, read with 2 KiB fetches.
// kfake alone delivers all 8 aborted records.
func TestCutFetchCarriesAbortedTransactions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fix     fixes
		aborted int // aborted records the reader receives
	}{
		{"corrected", allFixes, 0},
		{"kfake alone", allFixes &^ fixFetch, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, addr, err := start(Config{}, tc.fix)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, CreateTopics(ctx, []string{addr}, 1, "t"))

			value := func(kind string, i int) []byte {
				return fmt.Appendf(nil, "%s-%d-%s", kind, i, bytes.Repeat([]byte{'.'}, 480))
			}
			produceTxn(ctx, t, addr, "t", 0, 8, kgo.TryAbort, func(i int) []byte { return value("aborted", i) })
			produceTxn(ctx, t, addr, "t", 0, 8, kgo.TryCommit, func(i int) []byte { return value("committed", i) })

			// The aborted records precede the committed ones in the log:
			// once the last committed one is read, every record before
			// it was delivered or skipped.
			isCommitted := func(r *kgo.Record) bool { return bytes.HasPrefix(r.Value, []byte("committed-")) }
			got := readCommitted(ctx, t, addr, "t", 2048, func(got []*kgo.Record) bool {
				return len(got) > 0 && isCommitted(got[len(got)-1]) && bytes.HasPrefix(got[len(got)-1].Value, []byte("committed-7-"))
			})
			aborted, committed := 0, 0
			for _, r := range got {
				if isCommitted(r) {
					committed++
				} else {
					aborted++
				}
			}
			require.Equal(t, 8, committed, "committed records read")
			require.Equal(t, tc.aborted, aborted, "aborted records read")
		})
	}
}

// produceTxn produces n records to partition p of topic in one transaction
// of its own transactional id, each record in a batch of its own, and ends
// it with commit.
func produceTxn(ctx context.Context, t *testing.T, addr, topic string, p int32, n int, commit kgo.TransactionEndTry, value func(int) []byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(fmt.Sprintf("producer-%s-%d-%v", topic, p, commit)),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0),
		// Uncompressed, so that a record's size on the log is its value's.
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.BeginTransaction())
	for i := range n {
		// One record per produce request: one batch each.
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: value(i)}).FirstErr())
	}
	require.NoError(t, cl.EndTransaction(ctx, commit))
}

// readCommitted reads topic from the start with read_committed, in fetches
// of at most maxBytes per request and per partition, until done reports
// true of the records read so far, and returns them. It fails t when ctx
// ends first.
func readCommitted(ctx context.Context, t *testing.T, addr, topic string, maxBytes int32, done func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(maxBytes), kgo.FetchMaxPartitionBytes(maxBytes))
	require.NoError(t, err)
	defer cl.Close()
	var got []*kgo.Record
	for !done(got) {
		f := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d records of %s before the deadline", len(got), topic)
		f.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	return got
}

// An uncut read_committed response still holds about what the client asked
// for: 8 partitions of 1 MiB each, read with a 1 MiB response limit and a
// 1 MiB partition limit, come back as about 1 MiB (each partition's share,
// 128 KiB, plus at most one batch), from every partition, not as 8 MiB. A
// worker holds what it fetched, decoded: 8 MiB responses doubled its peak
// memory. Every partition's aborted transactions come with it (the other
// tests), so the share is kept, not cut.
func TestUncutFetchKeepsToTheRequestedSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, addr, err := Start(Config{})
	require.NoError(t, err)
	defer c.Close()
	const partitions, batch = 8, 16 << 10
	require.NoError(t, CreateTopics(ctx, []string{addr}, partitions, "big"))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("big"), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(batch))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.BeginTransaction())
	value := bytes.Repeat([]byte{'v'}, 1000)
	for p := range int32(partitions) {
		for range 1 << 10 { // 1 MiB a partition
			cl.Produce(ctx, &kgo.Record{Topic: "big", Partition: p, Value: value}, nil)
		}
	}
	require.NoError(t, cl.Flush(ctx))
	require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))

	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MaxBytes, req.IsolationLevel = -1, 100, 1<<20, isolationReadCommitted
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "big")
	require.NoError(t, err)
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = "big", topics["big"].ID // by name before v13, by id since
	for p := range int32(partitions) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.LogStartOffset, rp.CurrentLeaderEpoch = p, 0, 1<<20, -1, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	total, with := 0, 0
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			require.NoError(t, kerr.ErrorForCode(p.ErrorCode), "partition %d", p.Partition)
			total += len(p.RecordBatches)
			if len(p.RecordBatches) > 0 {
				with++
			}
		}
	}
	require.Equal(t, partitions, with, "every partition returns records")
	require.LessOrEqual(t, total, 1<<20+batch+1024, "the response's bytes")
}
