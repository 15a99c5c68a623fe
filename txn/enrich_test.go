package txn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/txn"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The enrich app end to end on the embedded broker: two sub-topologies
// joined by a repartition topic created at start, a table restored from its
// own source topic, two workers. Every order comes out exactly once, keyed
// by its customer, with that customer's value.
func TestEnrichEndToEnd(t *testing.T) {
	const orders, customers = 4000, 50
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
	ws.start("w1")
	ws.start("w2")
	for i := range orders {
		v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":%d}`, i, i%customers, i)
		cl.Produce(ctx, &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "x%d", i), Value: v}, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	seen := map[string]int{}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics("orders-enriched"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer rd.Close()
	for len(seen) < orders && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var o struct {
				ID       string          `json:"order_id"`
				Customer string          `json:"customer_id"`
				Value    json.RawMessage `json:"customer"`
			}
			require.NoError(t, json.Unmarshal(r.Value, &o))
			require.Equal(t, o.Customer, string(r.Key), "keyed by customer")
			if string(o.Value) != "null" {
				var n int
				fmt.Sscanf(o.Customer, "c%d", &n)
				require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, n), string(o.Value))
			}
			seen[o.ID]++
		})
		cancel()
	}
	require.Len(t, seen, orders)
	for id, n := range seen {
		require.Equal(t, 1, n, "order %s", id)
	}
	ws.stopAll()
	ws.requireNoErrors()
}
