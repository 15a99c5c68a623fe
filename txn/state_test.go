package txn_test

import (
	"testing"
	"time"

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
	topo, err := txntest.SumTopology("sum", "in", "out")
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
	require.Equal(t, txntest.ExpectedSums(n, keys), table)
	ws.stopAll()
	ws.requireNoErrors()
}
