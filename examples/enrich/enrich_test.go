package enrich_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

var ts = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestEnrich(t *testing.T) {
	topo, err := enrich.Build("enrich", "orders", "customers", "orders-enriched")
	require.NoError(t, err)
	require.Contains(t, topo.Describe(), "enrich-orders-by-customer-repartition (repartition)")
	d := streamtest.New(topo, streamtest.WithPartitions("orders", 3), streamtest.WithPartitions("customers", 3))
	defer d.Close()
	pipe := func(topic, key, value string) {
		t.Helper()
		var v []byte
		if value != "null" {
			v = []byte(value)
		}
		require.NoError(t, d.PipeBytes(topic, []byte(key), v, ts))
	}
	pipe("customers", "c1", `{"name":"Ada"}`)
	pipe("orders", "x", `{"order_id":"o1","customer_id":"c1","amount_cents":500,"note":"keep me"}`)
	pipe("orders", "y", `{"order_id":"o2","customer_id":"c2","amount_cents":100}`)
	pipe("customers", "c1", `{"name":"Ada L."}`)
	pipe("orders", "z", `{"order_id":"o3","customer_id":"c1","amount_cents":7}`)
	pipe("customers", "c1", "null")
	pipe("orders", "z", `{"order_id":"o4","customer_id":"c1","amount_cents":8}`)
	pipe("orders", "bad", `{"order_id":"o5","amount_cents":1}`) // no customer_id
	pipe("orders", "bad", `not json`)
	pipe("orders", "bad", `{"order_id":"o6","customer_id":"c1","amount_cents":"ten"}`)
	pipe("customers", "c9", `[1,2]`) // not an object

	out, err := streamtest.Output(d, "orders-enriched", serde.String, serde.String).ReadAll()
	require.NoError(t, err)
	var got []string
	for _, r := range out {
		got = append(got, r.Key+" "+r.Value)
	}
	require.Equal(t, []string{
		`c1 {"amount_cents":500,"customer":{"name":"Ada"},"customer_id":"c1","note":"keep me","order_id":"o1"}`,
		`c2 {"amount_cents":100,"customer":null,"customer_id":"c2","order_id":"o2"}`,
		`c1 {"amount_cents":7,"customer":{"name":"Ada L."},"customer_id":"c1","order_id":"o3"}`,
		`c1 {"amount_cents":8,"customer":null,"customer_id":"c1","order_id":"o4"}`,
	}, got)

	dead, err := d.DLQ().ReadAll()
	require.NoError(t, err)
	require.Len(t, dead, 4)
	require.Contains(t, dead[0].Header(stream.HeaderError), `missing "customer_id"`)
	require.Equal(t, "orders", dead[0].Header(stream.HeaderTopic))
	require.Contains(t, dead[3].Header(stream.HeaderError), "must be a JSON object")
	require.Equal(t, "customers", dead[3].Header(stream.HeaderTopic))
}
