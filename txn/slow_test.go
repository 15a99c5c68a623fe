package txn_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
)

// A processor slow enough that one poll's worth of records (everything
// buffered, up to MaxBatchRecords) takes longer than the transaction
// timeout must not stall the worker: were a transaction to cover all of
// it, the broker would abort it, and every retry would poll the same
// records and be aborted again. The worker polls in chunks and ends each
// transaction at the commit interval, so it commits everything in one
// session. The first poll, before the worker has measured anything, takes
// 1,000 records: a second, a quarter of the timeout, so that a loaded
// machine (whose sleeps last longer) still fits it.
func TestSlowProcessingStaysWithinTransactionTimeout(t *testing.T) {
	const n = 6000
	const perRecord = time.Millisecond // n of them: 6s, the timeout 4s
	c := newCluster(t, 4, "in", "out")
	require.NoError(t, txntest.Produce(c.ctx(30*time.Second), c.brokers, "in", 0, n, 0, 20))

	b := stream.NewBuilder("slow")
	stream.From(b, "in", serde.Bytes, serde.Bytes).
		Peek(func(_, _ []byte) { time.Sleep(perRecord) }). // a slow processor
		To("out", serde.Bytes, serde.Bytes)
	topo, err := b.Build()
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	ws := c.workers(topo, txn.Config{
		SessionTimeout:     3 * time.Second,
		TransactionTimeout: 4 * time.Second,
		CommitInterval:     100 * time.Millisecond,
		Registerer:         reg,
	})
	ws.start("w1")
	rep := verifyOutput(t, c.brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	require.Equal(t, 1.0, counterValue(reg, "sluice_sessions_created_total"), "no transaction timed out")
	ws.stopAll()
	ws.requireNoErrors()
}

// counterValue returns the sum of a counter's series in reg (0 when it
// cannot be read).
func counterValue(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}
