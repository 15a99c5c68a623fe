package revenue_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// One record per (customer, window), once stream time passes the window's
// end plus the grace, with the orders and revenue of the window's on-time
// orders; a late order is dropped and counted, a malformed one goes to
// the DLQ.
func TestRevenueApp(t *testing.T) {
	topo, err := revenue.Build("rev", "orders", "revenue-per-minute", time.Minute, 10*time.Second)
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "orders", serde.String, serde.String)
	pipe := func(v string, at time.Duration) { t.Helper(); require.NoError(t, in.Pipe("", v, t0.Add(at))) }
	pipe(`{"order_id":"1","customer_id":"c1","amount_cents":100}`, 0)
	pipe(`{"order_id":"2","customer_id":"c1","amount_cents":250}`, 30*time.Second)
	pipe(`{"order_id":"3","customer_id":"c2","amount_cents":5}`, 59*time.Second)
	pipe(`{"order_id":"4","customer_id":"c1","amount_cents":1}`, 65*time.Second)
	pipe(`{"order_id":"5","customer_id":"c1","amount_cents":7}`, 55*time.Second) // within the grace
	pipe(`{"order_id":"bad"`, 66*time.Second)
	out := streamtest.Output(d, "revenue-per-minute", serde.String, serde.JSON[revenue.Result]())
	require.Zero(t, out.Len(), "no window has closed")
	pipe(`{"order_id":"6","customer_id":"c2","amount_cents":1}`, 70*time.Second)    // closes 12:00
	pipe(`{"order_id":"7","customer_id":"c2","amount_cents":1000}`, 10*time.Second) // late
	recs, err := out.ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "c1", recs[0].Key)
	require.Equal(t, revenue.Result{CustomerID: "c1", WindowStart: "2026-12-01T12:00:00.000Z", WindowEnd: "2026-12-01T12:01:00.000Z",
		Totals: revenue.Totals{Orders: 3, RevenueCents: 357}}, recs[0].Value)
	require.Equal(t, revenue.Totals{Orders: 1, RevenueCents: 5}, recs[1].Value.Totals)
	require.Equal(t, int64(1), d.Stats().Late)
	dlq, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dlq, 1)
}
