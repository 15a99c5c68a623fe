package txn_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recycleCheck wraps a topology whose tasks reuse their output records
// (topology.Recycler), and checks that the runtime lets them only once every
// record is acknowledged: Process marks each output with offset -1, which
// franz-go overwrites with the record's offset when the broker
// acknowledges it.
type recycleCheck struct {
	topology.Topology
	recycles, early atomic.Int64
}

func (c *recycleCheck) NewTask(id topology.TaskID, cfg topology.TaskConfig) (topology.Task, error) {
	t, err := c.Topology.NewTask(id, cfg)
	if err != nil {
		return nil, err
	}
	return &recycleTask{Task: t, check: c}, nil
}

type recycleTask struct {
	topology.Task
	check *recycleCheck
	outs  []*kgo.Record
}

func (t *recycleTask) Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	n := len(out)
	out, err := t.Task.Process(rec, out)
	for _, o := range out[n:] {
		o.Offset = -1
		t.outs = append(t.outs, o)
	}
	return out, err
}

func (t *recycleTask) Recycle() {
	for _, o := range t.outs {
		if o.Offset < 0 {
			t.check.early.Add(1)
		}
	}
	t.outs = t.outs[:0]
	t.check.recycles.Add(1)
	t.Task.(topology.Recycler).Recycle()
}

// Tasks reuse their output records only after the transaction that
// produced them committed, every record acknowledged; the output is still
// exactly once.
func TestOutputsAreRecycledOnlyOnceAcknowledged(t *testing.T) {
	const n = 30_000
	c := newCluster(t, 4, "in", "out")
	topo, err := passthrough.Build("recycle", "in", "out")
	require.NoError(t, err)
	check := &recycleCheck{Topology: topo}
	ws := c.workers(check, txn.Config{SessionTimeout: 3 * time.Second, MaxBatchRecords: 2_000})
	ws.start("w1")

	ctx := c.ctx(2 * time.Minute)
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n, 1000, 100))
	rep, err := txntest.Verify(ctx, c.brokers, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s", rep)
	ws.stopAll()
	ws.requireNoErrors()
	require.Positive(t, check.recycles.Load())
	require.Zero(t, check.early.Load(), "records recycled before the broker acknowledged them")
}
