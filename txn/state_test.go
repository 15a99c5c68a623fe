package txn_test

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
)

// A running sum per key stays exact while tasks move between workers
// (scale 1 → 3 → 1) with input arriving all along, the CPU busy: the
// group forms while a backlog builds, each move restores the task's store
// from its changelog, and every input is added exactly once.
func TestStatefulSumAcrossRebalances(t *testing.T) {
	const n, keys = 30_000, 500
	busyCPU(t)
	c := newCluster(t, 8, "in", "out")
	topo, err := sumTopology("sum", "in", "out")
	require.NoError(t, err)
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir()})
	ctx := c.ctx(3 * time.Minute)

	feed := startKeyedFeeder(t, c.brokers, "in", 0, n, 500, 10*time.Millisecond, keys)
	feed.waitIssued(n / 10)
	ws.start("w1")
	ws.start("w2")
	ws.start("w3")
	feed.waitIssued(n / 2)
	ws.halt("w2")
	ws.halt("w3")
	require.Equal(t, int64(n), feed.wait())

	rep, err := txntest.Verify(ctx, c.brokers, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s", rep)
	table, err := txntest.ReadTable(ctx, c.brokers, "sum-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, expectedSums(n, keys), table)
	ws.stopAll()
	ws.requireNoErrors()
}

// Partitions assigned to a worker while its transaction is open (a
// cooperative rebalance that revokes nothing does not abort it) get their
// tasks restored after that transaction, never inside it: the first poll
// that brings their records aborts the transaction (reason new_task), the
// tasks are restored, and the records are processed in the next one. A
// restore while a transaction is open would fail the worker
// (Worker.restore refuses it). w2 builds up state (a key per record) and
// leaves, w1 takes its partitions over, with input arriving all along and
// the CPU busy, until w1 has aborted for a new task; the sums stay exact.
func TestPartitionsAssignedMidTransactionRestoreOutsideIt(t *testing.T) {
	busyCPU(t)
	c := newCluster(t, 8, "in", "out")
	topo, err := sumTopology("mid", "in", "out")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, CommitInterval: time.Second, StateDir: t.TempDir(), Registerer: reg})
	feed := startKeyedFeeder(t, c.brokers, "in", 0, math.MaxInt64, 200, 10*time.Millisecond, 0)

	ws.start("w1")
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	round := 0
	for labeledCounter(reg, "sluice_transactions_aborted_total", "reason", "new_task") == 0 {
		require.True(t, time.Now().Before(deadline), "w1 never had a partition assigned while a transaction was open (%d rounds)", round)
		round++
		ws.start("w2")
		feed.waitIssued(feed.issued.Load() + 5000) // w2 builds up state
		ws.halt("w2")
		feed.waitIssued(feed.issued.Load() + 2000) // w1 takes its partitions over
	}
	t.Logf("w1 aborted for a new task after %d rounds (%v)", round, time.Since(start).Round(time.Millisecond))
	n := feed.stop()
	rep := verifyOutput(t, c.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	table, err := txntest.ReadTable(c.ctx(time.Minute), c.brokers, "mid-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, expectedSums(n, 0), table)
	ws.stopAll()
	ws.requireNoErrors()
}

// labeledCounter returns the value of the series of counter name in reg
// whose label is value (0 when there is none).
func labeledCounter(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					v += m.GetCounter().GetValue()
				}
			}
		}
	}
	return v
}
