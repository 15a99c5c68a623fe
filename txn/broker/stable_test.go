package broker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A require-stable offset fetch is refused only for the partitions with
// offsets pending in an open transaction, as on Kafka; kfake alone refuses
// every partition of the group while any transaction holds offsets for it.
func TestStableOffsetFetchIsPerPartition(t *testing.T) {
	// The group and its committed offsets, 1 for both partitions of t;
	// producer a's transaction holds offset 5 for partition 0.
	setUp := func(t *testing.T, fix fixes) (context.Context, *kgo.Client, int64, int16) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		c, addr, err := start(Config{}, fix)
		require.NoError(t, err)
		t.Cleanup(c.Close)
		require.NoError(t, CreateTopics(ctx, []string{addr}, 2, "t"))
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		require.NoError(t, err)
		t.Cleanup(cl.Close)
		var committed kadm.Offsets
		committed.Add(kadm.Offset{Topic: "t", Partition: 0, At: 1, LeaderEpoch: -1})
		committed.Add(kadm.Offset{Topic: "t", Partition: 1, At: 1, LeaderEpoch: -1})
		_, err = kadm.NewClient(cl).CommitOffsets(ctx, "g", committed)
		require.NoError(t, err)
		pid, epoch := initProducer(ctx, t, cl, "a")
		txnOffsetCommit(ctx, t, cl, "a", pid, epoch, 0, 5)
		return ctx, cl, pid, epoch
	}
	t.Run("kfake alone", func(t *testing.T) {
		ctx, cl, _, _ := setUp(t, allFixes&^fixStable)
		_, err := fetchStable(ctx, cl, 1)
		require.ErrorIs(t, err, kerr.UnstableOffsetCommit, "kfake refuses partition 1, which has nothing pending")
	})
	ctx, cl, pid, epoch := setUp(t, allFixes)
	at, err := fetchStable(ctx, cl, 1)
	require.NoError(t, err, "partition 1 has nothing pending")
	require.EqualValues(t, 1, at)
	_, err = fetchStable(ctx, cl, 0)
	require.ErrorIs(t, err, kerr.UnstableOffsetCommit, "partition 0 has offsets pending")

	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = "a", pid, epoch, true
	resp, err := end.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.ErrorCode))

	at, err = fetchStable(ctx, cl, 0)
	require.NoError(t, err, "a committed")
	require.EqualValues(t, 5, at)

	// A new transaction of a, after the epoch kfake bumps at EndTxn, holds
	// partition 0 again; one that a fenced re-initialization aborted does
	// not.
	_, epoch2 := describeEpoch(ctx, t, cl, "a")
	txnOffsetCommit(ctx, t, cl, "a", pid, epoch2, 0, 7)
	_, err = fetchStable(ctx, cl, 0)
	require.ErrorIs(t, err, kerr.UnstableOffsetCommit)
	initProducer(ctx, t, cl, "a") // aborts the open transaction
	at, err = fetchStable(ctx, cl, 0)
	require.NoError(t, err, "the re-initialization aborted a's transaction")
	require.EqualValues(t, 5, at)
}

func initProducer(ctx context.Context, t *testing.T, cl *kgo.Client, txnID string) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID = &txnID
	req.TransactionTimeoutMillis = 60_000
	req.ProducerID, req.ProducerEpoch = -1, -1
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.ErrorCode))
	return resp.ProducerID, resp.ProducerEpoch
}

func describeEpoch(ctx context.Context, t *testing.T, cl *kgo.Client, txnID string) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{txnID}
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	require.Len(t, resp.TransactionStates, 1)
	st := resp.TransactionStates[0]
	require.NoError(t, kerr.ErrorForCode(st.ErrorCode))
	return st.ProducerID, st.ProducerEpoch
}

// txnOffsetCommit puts offset at for partition p of topic t, group g, into
// txnID's transaction (starting it: TxnOffsetCommit v5+ does).
func txnOffsetCommit(ctx context.Context, t *testing.T, cl *kgo.Client, txnID string, pid int64, epoch int16, p int32, at int64) {
	t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, "g", pid, epoch
	req.Generation = -1
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "t")
	require.NoError(t, err)
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = "t", topics["t"].ID // by name before v6, by id since
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = p, at, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	require.NoError(t, err)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			require.NoError(t, kerr.ErrorForCode(rp.ErrorCode))
		}
	}
}

// stableFetch is the request for group g's offset for partition p of
// topic t, requiring stable offsets, the way a joining consumer asks.
func stableFetch(p int32) *kmsg.OffsetFetchRequest {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.RequireStable = true
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = "g"
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.Partitions = "t", []int32{p}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	return req
}

// fetchStable fetches group g's offset for partition p of topic t,
// requiring stable offsets (stableFetch).
func fetchStable(ctx context.Context, cl *kgo.Client, p int32) (int64, error) {
	resp, err := stableFetch(p).RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return 0, err
		}
		for _, t := range g.Topics {
			for _, sp := range t.Partitions {
				return sp.Offset, kerr.ErrorForCode(sp.ErrorCode)
			}
		}
	}
	return 0, kerr.UnknownServerError
}

// The decision on a require-stable fetch counts the TxnOffsetCommit
// requests that arrive while the broker is asked which transactions are
// open: a transaction of producer a, whose offsets for t/0 are known, ends
// during the question and a's next transaction (same producer id and
// epoch, as kfake does not bump it) sends offsets for t/0 again; b's first
// transaction sends offsets for t/1. The broker answers that a's
// transaction is not open (it was asked between the two). Both partitions
// stay pending, and so does a for the next fetch; deciding over the
// senders as they were before the question answered t/0 and t/1 stable
// and forgot a, so every later fetch of t/0 returned the committed offset
// under a's pending one.
func TestStableOffsetsCountCommitsDuringTheQuestion(t *testing.T) {
	s := &stableOffsets{senders: map[groupPartition]map[txnRef]uint64{}}
	s.sleep = func(wake func()) { wake() }
	a := txnRef{txnID: "a", producerID: 1}
	b := txnRef{txnID: "b", producerID: 2}
	offsets := func(r txnRef, p int32) *kmsg.TxnOffsetCommitRequest {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = r.txnID, r.producerID, r.epoch, "g"
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition = p
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	stable := func(p int32) bool {
		req := stableFetch(p)
		req.Version = 8
		s.fetch(req)
		return !req.RequireStable
	}

	s.sent(offsets(a, 0))
	asked := 0
	s.lookUp = func(senders map[groupPartition][]sender) (map[[16]byte]string, map[txnRef]bool) {
		asked++
		s.sent(offsets(a, 0))
		s.sent(offsets(b, 1))
		return nil, map[txnRef]bool{a: false}
	}
	require.False(t, stable(0), "a sent offsets for t/0 again during the question")
	require.Equal(t, 1, asked)

	s.lookUp = func(senders map[groupPartition][]sender) (map[[16]byte]string, map[txnRef]bool) {
		asked++
		open := map[txnRef]bool{}
		for _, ss := range senders {
			for _, sn := range ss {
				open[sn.txnRef] = true
			}
		}
		return nil, open
	}
	require.False(t, stable(0), "a's transaction is open")
	require.False(t, stable(1), "b's transaction is open")

	s.lookUp = func(map[groupPartition][]sender) (map[[16]byte]string, map[txnRef]bool) {
		asked++
		return nil, map[txnRef]bool{a: false, b: false}
	}
	require.True(t, stable(0), "a's and b's transactions ended")
	require.Empty(t, s.senders, "ended transactions are forgotten")
	require.True(t, stable(1), "nothing left to ask about")
	require.Equal(t, 4, asked)
}
