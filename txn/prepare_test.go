package txn_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
)

// A worker creates and restores the task of every partition assigned to
// it when the partition is assigned, records or not: a partition that
// gets no records has its task open, and the worker is ready only once
// every assigned task is (a task created at its first record left a
// quiet partition's state unrestored while the worker said it was
// ready).
func TestQuietPartitionsGetTheirTasksOnAssignment(t *testing.T) {
	const n = 2_000
	c := newCluster(t, 4, "in", "out")
	topo, err := sumTopology("quiet", "in", "out")
	require.NoError(t, err)
	ctx := c.ctx(2 * time.Minute)
	// Every record in partition 0: the other three stay quiet.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()
	for seq := range int64(n) {
		cl.Produce(ctx, &kgo.Record{Partition: 0, Key: []byte("k"), Value: txntest.SeqValue(seq, 10)}, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", SessionTimeout: 3 * time.Second, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	h := waitHealth(ctx, t, w, func(h txn.Health) bool { return h.Ready && h.Tasks == 4 })
	require.Empty(t, h.Why)
	rep := verifyOutput(t, c.brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	require.Equal(t, 4, w.Health().Tasks, "the quiet partitions' tasks stay open")
	stop()
	require.NoError(t, <-done)
}

// A worker that starts on a backlog in all its partitions aborts no
// transaction for a task it did not have: every assigned task is
// prepared before the first transaction. Tasks created at their first
// records made every start abort the transactions whose polls met the
// partitions the first poll had not brought (reason new_task), and
// fetch and process their records again.
func TestStartOnABacklogAbortsNothing(t *testing.T) {
	const n = 40_000
	c := newCluster(t, 8, "in", "out")
	topo, err := sumTopology("backlog", "in", "out")
	require.NoError(t, err)
	ctx := c.ctx(2 * time.Minute)
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n, 0, 100))
	reg := prometheus.NewRegistry()
	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", SessionTimeout: 3 * time.Second, StateDir: t.TempDir(), Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	rep := verifyOutput(t, c.brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	stop()
	require.NoError(t, <-done)
	require.Zero(t, labeledValue(reg, "sluice_transactions_aborted_total", "reason", "new_task"))
	require.Positive(t, counterValue(reg, "sluice_transactions_committed_total"))
}
