// Package revenue sums orders per customer and per tumbling window of
// event time, and emits exactly one record per (customer, window) once the
// window has closed.
//
// orders: JSON objects {"order_id": str, "customer_id": str,
// "amount_cents": int} (as the enrich app reads them), any key; event
// time is the record's timestamp. Orders are re-keyed by customer_id
// through the repartition topic `<app-id>-orders-by-customer-repartition`
// and counted in tumbling windows of --window with a grace of --grace
// (store `<app-id>-revenue-changelog`). When a task's stream time reaches
// a window's end plus the grace, the window's one record is written: key
// customer_id, value {"customer_id": str, "window_start": RFC3339 with
// milliseconds, UTC, "window_end": ..., "orders": int, "revenue_cents":
// int}. Orders later than that are dropped and counted
// (sluice_late_records_dropped_total); orders that are not JSON objects or
// lack a required field go to the DLQ `<app-id>-dlq`.
package revenue

import (
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// Totals is one customer's orders in one window.
type Totals struct {
	Orders       int64 `json:"orders"`
	RevenueCents int64 `json:"revenue_cents"`
}

// Result is the output value: a customer's totals in one window.
type Result struct {
	CustomerID  string `json:"customer_id"`
	WindowStart string `json:"window_start"`
	WindowEnd   string `json:"window_end"`
	Totals
}

// TimeFormat is the format of Result's window bounds: RFC 3339 with
// milliseconds, in UTC.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func amount(o enrich.Order) int64 {
	var n int64
	_ = json.Unmarshal(o["amount_cents"], &n) // validated by enrich.OrderSerde
	return n
}

func customerID(_ []byte, o enrich.Order) string {
	var id string
	_ = json.Unmarshal(o["customer_id"], &id) // validated by enrich.OrderSerde
	return id
}

// Build returns the revenue topology.
func Build(appID, orders, output string, size, grace time.Duration) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	byCustomer := stream.From(b, orders, serde.Bytes, enrich.OrderSerde, stream.Named("orders")).
		SelectKey(customerID, stream.Named("key-by-customer")).
		Repartition("orders-by-customer", serde.String, enrich.OrderSerde).
		GroupByKey(serde.String, enrich.OrderSerde)
	stream.WindowedBy(byCustomer, window.Tumbling{Size: size, Grace: grace}).
		Aggregate("revenue", func() Totals { return Totals{} }, func(_ string, o enrich.Order, t Totals) Totals {
			t.Orders++
			t.RevenueCents += amount(o)
			return t
		}, serde.JSON[Totals](), stream.EmitOnClose()).
		ToStream().
		Map(func(k window.Keyed[string], t Totals) (string, Result) {
			return k.Key, Result{
				CustomerID:  k.Key,
				WindowStart: k.Window.Start.UTC().Format(TimeFormat),
				WindowEnd:   k.Window.End.UTC().Format(TimeFormat),
				Totals:      t,
			}
		}, stream.Named("result")).
		To(output, serde.String, serde.JSON[Result](), stream.Named("write-revenue"))
	return b.Build()
}
