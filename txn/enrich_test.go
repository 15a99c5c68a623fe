package txn_test

import (
	"encoding/json"
	"errors"
	"fmt"
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
