package txn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The enrich app end to end on the embedded broker, with the CPU busy:
// two sub-topologies joined by a repartition topic created at start, a
// table restored from its own source topic, orders arriving while two
// workers form the group and a third joins. Every order comes out exactly
// once, keyed by its customer, with that customer's value, read with large
// and with small fetches.
func TestEnrichEndToEnd(t *testing.T) {
	const orders, customers = 20_000, 50
	busyCPU(t)
	c := newCluster(t, 4, "orders", "customers", "orders-enriched")
	topo, err := enrich.Build("enrich", "orders", "customers", "orders-enriched")
	require.NoError(t, err)
	ctx := c.ctx(2 * time.Minute)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	for i := range customers {
		r := &kgo.Record{Topic: "customers", Key: fmt.Appendf(nil, "c%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i)}
		require.NoError(t, cl.ProduceSync(ctx, r).FirstErr())
	}
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir()})
	for i := range orders {
		switch i {
		case orders / 10:
			ws.start("w1")
			ws.start("w2")
		case orders / 2:
			ws.start("w3")
		}
		v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":%d}`, i, i%customers, i)
		cl.Produce(ctx, &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "x%d", i), Value: v}, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	read := func(lim txntest.Limits) (map[string]int, error) {
		seen := map[string]int{}
		var bad error
		err := txntest.ReadCommittedWith(ctx, c.brokers, "orders-enriched", lim, func(r *kgo.Record) {
			if err := checkEnriched(r); err != nil && bad == nil {
				bad = fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			var o struct {
				ID string `json:"order_id"`
			}
			_ = json.Unmarshal(r.Value, &o)
			seen[o.ID]++
		}, func() bool { return len(seen) >= orders })
		return seen, errors.Join(err, bad)
	}
	got, err := txntest.ReadEach(read, txntest.DiffMaps)
	require.NoError(t, err)
	seen := got[0]
	require.Len(t, seen, orders)
	for id, n := range seen {
		require.Equal(t, 1, n, "order %s", id)
	}
	ws.stopAll()
	ws.requireNoErrors()
}

// checkEnriched checks that an enriched order is keyed by its customer
// and carries that customer's value (or null, before the table has it).
func checkEnriched(r *kgo.Record) error {
	var o struct {
		Customer string          `json:"customer_id"`
		Value    json.RawMessage `json:"customer"`
	}
	if err := json.Unmarshal(r.Value, &o); err != nil {
		return err
	}
	if o.Customer != string(r.Key) {
		return fmt.Errorf("keyed by %q, not by its customer %q", r.Key, o.Customer)
	}
	if string(o.Value) == "null" {
		return nil
	}
	var n int
	if _, err := fmt.Sscanf(o.Customer, "c%d", &n); err != nil {
		return err
	}
	if want := fmt.Sprintf(`{"n":%d}`, n); string(o.Value) != want {
		return fmt.Errorf("customer %s: %s, want %s", o.Customer, o.Value, want)
	}
	return nil
}

// A task holding a source table moves between workers many times while
// customers change and orders flow; workers come back to their old state
// directories, so restores start from old checkpoints. Per output
// partition, in offset order, the customer version an order carries never
// goes back: the table a task resumes with is the one its committed input
// made. Restored to the customers topic's end instead, a table is ahead of
// where processing resumes and goes back through older versions as the
// task consumes them again.
func TestEnrichTableNeverGoesBackWhenTasksMove(t *testing.T) {
	const orders, customers = 30_000, 20
	busyCPU(t)
	c := newCluster(t, 4, "orders", "customers", "orders-enriched")
	topo, err := enrich.Build("enrich", "orders", "customers", "orders-enriched")
	require.NoError(t, err)
	ctx := c.ctx(3 * time.Minute)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	require.NoError(t, err)
	defer cl.Close()
	version := make([]int, customers)
	update := func(i int) {
		version[i]++
		r := &kgo.Record{Topic: "customers", Key: fmt.Appendf(nil, "c%d", i), Value: fmt.Appendf(nil, `{"v":%d}`, version[i])}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { require.NoError(t, err) })
	}
	// Customers have a history before the first worker starts: a table
	// restored past where its task starts consuming goes back through it.
	for i := range 30 * customers {
		update(i % customers)
	}
	require.NoError(t, cl.Flush(ctx))
	// Small fetches and batches: a task's first batches after a move
	// hold a few records of each topic, so orders come between the
	// customer updates it consumes again.
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir(), MaxBatchRecords: 20,
		ClientOpts: []kgo.Opt{kgo.FetchMaxPartitionBytes(1000)}})
	// Every worker is asked for the customers all along: the tasks it
	// holds and has not opened yet open for the queries, between the
	// moves, and must start from the same state as those records open.
	var found atomic.Int64
	ws.query = func(ctx context.Context, w *txn.Worker) error {
		for i := 0; ctx.Err() == nil; i++ {
			res, err := w.QueryKey(ctx, "customers", fmt.Sprintf("c%d", i%customers))
			switch {
			case ctx.Err() != nil:
			case err != nil:
				return err
			case res.Status == txn.QueryFound:
				found.Add(1)
			default: // another worker's, or not ready: ask a bit later
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		return nil
	}
	ws.start("w1")
	ws.start("w2")
	// Each step, at a tenth of the orders, moves tasks: a worker leaves
	// (its state stays) or comes back to its state.
	steps := []func(){
		func() { ws.start("w3") }, func() { ws.halt("w1") }, func() { ws.start("w1") },
		func() { ws.halt("w2") }, func() { ws.halt("w3") }, func() { ws.start("w2") },
		func() { ws.start("w3") }, func() { ws.halt("w1") }, func() { ws.start("w1") },
	}
	for i := range orders {
		if i > 0 && i%(orders/10) == 0 {
			require.NoError(t, cl.Flush(ctx))
			steps[i/(orders/10)-1]()
		}
		if i%3 == 0 {
			update(i % customers)
		}
		v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":%d}`, i, i%customers, i)
		cl.Produce(ctx, &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "x%d", i), Value: v}, func(_ *kgo.Record, err error) { require.NoError(t, err) })
	}
	require.NoError(t, cl.Flush(ctx))

	type seen struct {
		orders   map[string]int
		versions map[int32][]string // per output partition: "customer:version" in offset order
	}
	read := func(lim txntest.Limits) (seen, error) {
		s := seen{orders: map[string]int{}, versions: map[int32][]string{}}
		err := txntest.ReadCommittedWith(ctx, c.brokers, "orders-enriched", lim, func(r *kgo.Record) {
			var o struct {
				ID       string `json:"order_id"`
				Customer struct {
					V int `json:"v"`
				} `json:"customer"`
			}
			_ = json.Unmarshal(r.Value, &o)
			s.orders[o.ID]++
			s.versions[r.Partition] = append(s.versions[r.Partition], fmt.Sprintf("%s:%d", r.Key, o.Customer.V))
		}, func() bool { return len(s.orders) >= orders })
		return s, err
	}
	got, err := txntest.ReadEach(read, func(a, b seen) string {
		if d := txntest.DiffMaps(a.orders, b.orders); d != "" {
			return d
		}
		return txntest.DiffMaps(mapsLen(a.versions), mapsLen(b.versions))
	})
	require.NoError(t, err)
	require.Len(t, got[0].orders, orders)
	for id, n := range got[0].orders {
		require.Equal(t, 1, n, "order %s", id)
	}
	for p, seq := range got[0].versions {
		last := map[string]int{}
		for i, kv := range seq {
			var key string
			var v int
			_, err := fmt.Sscanf(strings.Replace(kv, ":", " ", 1), "%s %d", &key, &v)
			require.NoError(t, err)
			require.GreaterOrEqual(t, v, last[key], "orders-enriched[%d], order %d of the partition: customer %s went back from version %d to %d", p, i, key, last[key], v)
			last[key] = v
		}
	}
	ws.stopAll()
	ws.requireNoErrors()
	require.Positive(t, found.Load(), "no query found a customer")
}

// mapsLen returns the length of each slice in m.
func mapsLen[K comparable, V any](m map[K][]V) map[K]int {
	n := make(map[K]int, len(m))
	for k, v := range m {
		n[k] = len(v)
	}
	return n
}
