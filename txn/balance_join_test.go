package txn_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A worker that finds its group held by a member balancing by partition
// (a worker of an older sluice, mid rolling upgrade) says so and waits;
// it joins and processes everything once that member has left.
func TestWorkerWaitsForAMemberOfAnotherBalancer(t *testing.T) {
	c := newCluster(t, 4, "in", "out")
	ctx := c.ctx(2 * time.Minute)
	joined := make(chan struct{}, 1)
	old, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumerGroup("mixed"), kgo.ConsumeTopics("in"),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case joined <- struct{}{}:
			default:
			}
		}))
	require.NoError(t, err)
	defer old.Close()
	go func() {
		for {
			if f := old.PollFetches(ctx); f.IsClientClosed() || ctx.Err() != nil {
				return
			}
		}
	}()
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the partition-balanced member never joined")
	}

	topo, err := passthrough.Build("mixed", "in", "out")
	require.NoError(t, err)
	var log txntest.SyncBuffer
	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", SessionTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "the group has members that do not balance by task") {
		select {
		case err := <-done:
			t.Fatalf("the worker stopped: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "no warning within a minute:\n%s", log.String())
	}
	old.Close() // leaves the group

	const n = 2_000
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n, 100, 50))
	rep, err := txntest.Verify(ctx, c.brokers, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s", rep)
	stop()
	require.NoError(t, <-done)
	require.Contains(t, log.String(), `msg="tasks assigned" app=mixed instance=w1 tasks="[0_0 0_1 0_2 0_3]"`)
	require.Contains(t, log.String(), `msg="tasks revoked" app=mixed instance=w1 tasks="[0_0 0_1 0_2 0_3]"`, "leaving the group at the stop")
	require.NotContains(t, log.String(), "tasks lost", "a join that failed lost nothing")
}
