package txn_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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
// tasks restored after that transaction, never inside it (Worker.restore
// refuses that, and the worker would fail): the loop prepares them when
// the transaction ends, or, if the open transaction polls their records
// first, that transaction aborts (reason new_task) and the records are
// processed in the next one; which comes first depends on when franz-go
// fetches them. w2 builds up state (a key per record) and leaves while
// w1's transaction is held open (its processor waits on a gate), with
// input arriving all along and the CPU busy; w1 takes every task over,
// and the sums stay exact.
func TestPartitionsAssignedMidTransaction(t *testing.T) {
	busyCPU(t)
	c := newCluster(t, 8, "in", "out")
	ctx := c.ctx(3 * time.Minute)
	feed := startKeyedFeeder(t, c.brokers, "in", 0, math.MaxInt64, 200, 10*time.Millisecond, 0)
	cfg := txn.Config{
		Brokers: c.brokers, SessionTimeout: 3 * time.Second,
		// One transaction outlasts the gate and the rebalance, and keeps
		// polling after them.
		CommitInterval: 8 * time.Second, TransactionTimeout: 30 * time.Second, MaxBatchRecords: 1_000_000,
		Logger: slog.New(slog.DiscardHandler),
	}
	type worker struct {
		w    *txn.Worker
		reg  *prometheus.Registry
		gate *gate
		stop func()
	}
	start := func(instance string) worker {
		g := &gate{}
		topo, err := gatedSumTopology("mid", "in", "out", g.pass)
		require.NoError(t, err)
		cfg := cfg
		reg := prometheus.NewRegistry()
		cfg.Instance, cfg.StateDir, cfg.Registerer = instance, t.TempDir(), reg
		w, err := txn.NewWorker(topo, cfg)
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(runCtx) }()
		return worker{w, reg, g, func() { stop(); require.NoError(t, <-done) }}
	}
	w1 := start("w1")
	w2 := start("w2")
	waitHealth(ctx, t, w2.w, func(h txn.Health) bool { return h.Ready && h.Tasks > 0 })
	feed.waitIssued(feed.issued.Load() + 5000) // w2 builds up state

	// w1's next record holds its transaction open; w2 leaves meanwhile.
	release := w1.gate.close()
	w1.gate.waitHeld(ctx, t)
	heldAt := time.Now()
	w2.stop()
	waitHealth(ctx, t, w1.w, func(h txn.Health) bool {
		return gaugeValue(w1.reg, "sluice_assigned_tasks") == 8 && h.Why == "tasks assigned and not restored yet"
	})
	t.Logf("w1 assigned every task %v after its transaction was held", time.Since(heldAt))
	release()
	waitHealth(ctx, t, w1.w, func(h txn.Health) bool { return h.Ready && h.Tasks == 8 })
	t.Logf("transactions aborted for a new task: %v", labeledValue(w1.reg, "sluice_transactions_aborted_total", "reason", "new_task"))
	n := feed.stop()
	rep := verifyOutput(t, c.brokers, n, 2*time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	table, err := txntest.ReadTable(c.ctx(time.Minute), c.brokers, "mid-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, expectedSums(n, 0), table)
	w1.stop()
}

// gate holds a processor's record while it is closed: the first record
// that passes a closed gate waits until it opens.
type gate struct {
	mu      sync.Mutex
	closed  chan struct{} // closed to open the gate; nil: open
	held    chan struct{} // closed when a record waits at the gate
	holding bool
}

// close closes the gate and returns the function that opens it.
func (g *gate) close() (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed, g.held, g.holding = make(chan struct{}), make(chan struct{}), false
	opened := g.closed
	return func() { close(opened) }
}

// pass lets a record through, waiting while the gate is closed.
func (g *gate) pass() {
	g.mu.Lock()
	wait := g.closed
	if wait != nil && !g.holding {
		g.holding = true
		close(g.held)
	}
	g.closed = nil // one record waits; the gate is open after it
	g.mu.Unlock()
	if wait != nil {
		<-wait
	}
}

// waitHeld waits until a record waits at the closed gate.
func (g *gate) waitHeld(ctx context.Context, t *testing.T) {
	t.Helper()
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	select {
	case <-held:
	case <-ctx.Done():
		require.FailNow(t, "no record came to the gate")
	}
}

// labeledValue returns the value of the series of counter or gauge name
// in reg whose label is value (0 when there is none).
func labeledValue(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return v
}

// A worker that is idle when a rebalance revokes its partitions closes
// their tasks at once, not after its next transaction (its sluice_tasks
// drops while it stays idle): another worker then builds on their state,
// and when the partitions come back the worker restores them instead of
// going on from the state it had.
func TestTasksRevokedWhileIdleClose(t *testing.T) {
	const keys, step = 40, 2_000
	c := newCluster(t, 8, "in", "out")
	topo, err := sumTopology("idle", "in", "out")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir(), Registerer: reg})
	ctx := c.ctx(2 * time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic("in"))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	want := map[string]int64{}
	var n int64
	// produce writes the next step records, keyed in turn by the keys
	// given, and waits until all are out.
	produce := func(keys []string) {
		for seq := n; seq < n+step; seq++ {
			key := keys[seq%int64(len(keys))]
			want[key] += amount(seq)
			require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: txntest.SeqValue(seq, 10)}).FirstErr())
		}
		n += step
		rep := verifyOutput(t, c.brokers, n, time.Minute)
		require.True(t, rep.Clean(), "%s", rep)
	}
	var all []string
	for k := range keys {
		all = append(all, fmt.Sprintf("k%d", k))
	}
	ws.start("w1")
	produce(all)
	ws.start("w2") // w1 is idle when it gives up partitions
	moved := waitAssigned(ctx, t, adm, "idle", map[string]int{"w1": 4, "w2": 4})["w2"]
	for labeledValue(reg, "sluice_tasks", "instance", "w1") != 4 {
		select {
		case <-ctx.Done():
			t.Fatalf("w1 holds %v tasks while idle, after 4 of its 8 partitions were revoked", labeledValue(reg, "sluice_tasks", "instance", "w1"))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Only w2's partitions get records: w1 stays idle.
	var theirs []string
	byKey := kgo.StickyKeyPartitioner(nil).ForTopic("in")
	for _, k := range all {
		if slices.Contains(moved, int32(byKey.Partition(&kgo.Record{Key: []byte(k)}, 8))) {
			theirs = append(theirs, k)
		}
	}
	require.NotEmpty(t, theirs)
	produce(theirs) // w2 adds to the sums of its partitions
	ws.halt("w2")
	waitAssigned(ctx, t, adm, "idle", map[string]int{"w1": 8})
	produce(all) // w1 has them back
	table, err := txntest.ReadTable(ctx, c.brokers, "idle-sums-changelog")
	require.NoError(t, err)
	require.Equal(t, want, table)
	ws.stopAll()
	ws.requireNoErrors()
}

// waitAssigned waits until the members of group, by instance id, hold
// the given numbers of partitions of topic "in", and no other member any;
// it returns the partitions each holds.
func waitAssigned(ctx context.Context, t *testing.T, adm *kadm.Client, group string, want map[string]int) map[string][]int32 {
	t.Helper()
	for {
		got := map[string]int{}
		parts := map[string][]int32{}
		if groups, err := adm.DescribeGroups(ctx, group); err == nil {
			for _, m := range groups[group].Members {
				if a, ok := m.Assigned.AsConsumer(); ok && m.InstanceID != nil {
					for _, tp := range a.Topics {
						if tp.Topic == "in" {
							got[*m.InstanceID] += len(tp.Partitions)
							parts[*m.InstanceID] = append(parts[*m.InstanceID], tp.Partitions...)
						}
					}
				}
			}
		}
		if maps.Equal(got, want) {
			return parts
		}
		select {
		case <-ctx.Done():
			t.Fatalf("assignment %v, want %v", got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
