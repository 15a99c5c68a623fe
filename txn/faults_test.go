package txn_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/txn/txntest/child"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Faults are injected into the transactions of worker w1 of app "faults".
// It runs alone: no rebalance mixes its effects with the fault's.
const (
	faultApp   = "faults"
	faultTxnID = faultApp + "-w1"
)

// runFaulted starts, with the CPU busy, a broker with topics in/out (4
// partitions), lets inject install its faults, and runs worker w1 of the
// running-sum topology (txntest.SumTopology: stateful, so that the state protocol is
// faulted too) while input flows until fired reports that the faults did
// their work. Then it requires exactly-once output, a changelog equal to
// the sums recomputed from the input, and no worker error. It returns the
// worker's logs (Debug level).
func runFaulted(t *testing.T, inject func(b *kfake.Cluster), fired func() bool) *child.Lines {
	t.Helper()
	busyCPU(t)
	b, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	c := &cluster{t: t, brokers: []string{addr}}
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 4, "in", "out"))
	inject(b)
	topo, err := sumTopology(faultApp, "in", "out")
	require.NoError(t, err)
	logs := child.NewLines()
	ws := c.workers(topo, txn.Config{
		SessionTimeout: 3 * time.Second, CommitInterval: 50 * time.Millisecond, StateDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ws.start("w1")
	feed := startFeeder(t, c.brokers, "in", 0, math.MaxInt64, 250, 20*time.Millisecond)
	require.Eventually(t, fired, time.Minute, 10*time.Millisecond, "the faults did not fire as planned")
	n := feed.stop()
	rep := verifyOutput(t, c.brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	table, err := txntest.ReadTable(c.ctx(time.Minute), c.brokers, faultApp+"-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, expectedSums(n, 1000), table, "state is not exactly once")
	ws.stopAll()
	ws.requireNoErrors()
	return logs
}

// isCommit selects EndTxn requests that commit.
func isCommit(r kmsg.Request) bool { return r.(*kmsg.EndTxnRequest).Commit }

// EndTxn(commit) answered UNKNOWN_SERVER_ERROR before the broker commits:
// no false commit, exactly-once holds.
func TestFaultEndTxnUnknownServerError(t *testing.T) {
	var h *kfake.FaultHandle
	runFaulted(t, func(b *kfake.Cluster) {
		h = b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: faultTxnID, Err: kerr.UnknownServerError, When: isCommit})
	}, func() bool { return h.Hits() == 1 })
}

// EndTxn(commit) that the broker commits but answers UNKNOWN_SERVER_ERROR
// (franz-go then reports an abort): no false abort either, exactly-once
// holds. The commit goes through a copy of the request sent on another
// connection, while the worker's own request is answered with the error.
// The request faulted is a commit after the first EndTxn of the worker's
// producer session: the broker's own control sleeps on that first one
// (broker.Start), and a request must not sleep twice.
func TestFaultEndTxnCommittedThenUnknownServerError(t *testing.T) {
	var fired atomic.Bool
	logs := runFaulted(t, func(b *kfake.Cluster) {
		replay, err := kgo.NewClient(kgo.SeedBrokers(b.ListenAddrs()...))
		require.NoError(t, err)
		t.Cleanup(replay.Close)
		var replaying atomic.Bool
		var ends atomic.Int64 // EndTxn requests since the worker's InitProducerID
		b.ControlKey(int16(kmsg.InitProducerID), func(kr kmsg.Request) (kmsg.Response, error, bool) {
			b.KeepControl()
			if id := kr.(*kmsg.InitProducerIDRequest).TransactionalID; id != nil && *id == faultTxnID {
				ends.Store(0)
			}
			return nil, nil, false
		})
		b.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
			req := kr.(*kmsg.EndTxnRequest)
			if replaying.Load() || req.TransactionalID != faultTxnID {
				return nil, nil, false
			}
			if ends.Add(1) == 1 || fired.Load() || !req.Commit {
				return nil, nil, false
			}
			fired.Store(true)
			var replayErr error
			b.SleepControl(func() { // serve the copy while this request waits
				replaying.Store(true)
				dup := *req
				var resp *kmsg.EndTxnResponse
				if resp, replayErr = dup.RequestWith(context.Background(), replay); replayErr == nil {
					replayErr = kerr.ErrorForCode(resp.ErrorCode)
				}
				replaying.Store(false)
			})
			t.Logf("EndTxn committed through the copy (err: %v); answering UNKNOWN_SERVER_ERROR", replayErr)
			resp := req.ResponseKind().(*kmsg.EndTxnResponse)
			resp.ErrorCode = kerr.UnknownServerError.Code
			return resp, nil, true
		})
	}, fired.Load)
	ln, ok := logs.Find(time.Time{}, "it may have committed")
	require.True(t, ok, "the worker did not find out that its transaction committed")
	t.Logf("w1: %s", ln.Text)
}

// EndTxn answered NOT_COORDINATOR: no false commit, exactly-once holds.
func TestFaultEndTxnNotCoordinator(t *testing.T) {
	var h *kfake.FaultHandle
	runFaulted(t, func(b *kfake.Cluster) {
		h = b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: faultTxnID, Err: kerr.NotCoordinator, Count: 2, When: isCommit})
	}, func() bool { return h.Hits() == 2 })
}

// InitProducerID answered CONCURRENT_TRANSACTIONS a few times: the worker
// waits it out, exactly-once holds.
func TestFaultInitProducerIDConcurrentTransactions(t *testing.T) {
	var h *kfake.FaultHandle
	runFaulted(t, func(b *kfake.Cluster) {
		h = b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, TxnID: faultTxnID, Err: kerr.ConcurrentTransactions, Count: 3})
	}, func() bool { return h.Hits() == 3 })
}

// Connections dropped under some of the worker's Produce and EndTxn
// requests: no false commit, exactly-once holds.
func TestFaultDroppedConnections(t *testing.T) {
	var produces, ends, droppedProduces, droppedEnds atomic.Int32
	runFaulted(t, func(b *kfake.Cluster) {
		// dropEvery closes the connection under every 3rd request that
		// matches, twice, then lets everything through.
		dropEvery := func(seen, dropped *atomic.Int32, match func(kmsg.Request) bool) func(kmsg.Request) (kmsg.Response, error, bool) {
			return func(r kmsg.Request) (kmsg.Response, error, bool) {
				if !match(r) || seen.Add(1)%3 != 0 {
					return nil, nil, false
				}
				if dropped.Add(1) < 2 {
					b.KeepControl()
				} else {
					b.DropControl() // a kept control stays kept until dropped
				}
				return nil, errors.New("connection dropped by the test"), true
			}
		}
		b.ControlKey(int16(kmsg.Produce), dropEvery(&produces, &droppedProduces, func(r kmsg.Request) bool {
			id := r.(*kmsg.ProduceRequest).TransactionID
			return id != nil && *id == faultTxnID
		}))
		b.ControlKey(int16(kmsg.EndTxn), dropEvery(&ends, &droppedEnds, func(r kmsg.Request) bool {
			return r.(*kmsg.EndTxnRequest).TransactionalID == faultTxnID
		}))
	}, func() bool { return droppedProduces.Load() == 2 && droppedEnds.Load() == 2 })
}
