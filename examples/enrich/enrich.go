// Package enrich joins orders with the latest state of their customer.
//
// orders: JSON objects {"order_id": str, "customer_id": str,
// "amount_cents": int} (more fields are kept), any key. customers: a
// compacted topic keyed by customer_id whose values are JSON objects; a null
// value deletes the customer. Each order is re-keyed by customer_id through
// the repartition topic `<app-id>-orders-by-customer-repartition` (inside
// the transaction) and written to the output with key customer_id and value
// the order object plus "customer": the customer's latest value, or null.
//
// Orders that are not JSON objects or lack a required field, and customer
// values that are not JSON objects, go to the DLQ `<app-id>-dlq`.
package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
)

// Order is an order as read: every field kept, in raw JSON.
type Order map[string]json.RawMessage

// OrderSerde decodes orders and rejects those without a string order_id,
// a string customer_id or an integer amount_cents.
var OrderSerde = serde.Validated(serde.JSON[Order](), validateOrder)

func validateOrder(o Order) error {
	if o == nil {
		return errors.New("order is null")
	}
	var s string
	for _, f := range []string{"order_id", "customer_id"} {
		raw, ok := o[f]
		if !ok {
			return fmt.Errorf("missing %q", f)
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%q must be a string", f)
		}
	}
	raw, ok := o["amount_cents"]
	if !ok {
		return errors.New(`missing "amount_cents"`)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return errors.New(`"amount_cents" must be an integer`)
	}
	return nil
}

// CustomerSerde accepts any JSON object.
var CustomerSerde = serde.Validated(serde.JSON[json.RawMessage](), func(v json.RawMessage) error {
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
		return errors.New("customer value must be a JSON object")
	}
	return nil
})

// customerID returns the validated order's customer_id.
func customerID(_ []byte, o Order) string {
	var id string
	_ = json.Unmarshal(o["customer_id"], &id) // validated by OrderSerde
	return id
}

// Build returns the enrich topology.
func Build(appID, orders, customers, output string) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	table := stream.FromTable(b, customers, serde.String, CustomerSerde, stream.Named("customers"))
	stream.From(b, orders, serde.Bytes, OrderSerde, stream.Named("orders")).
		SelectKey(customerID, stream.Named("key-by-customer")).
		Repartition("orders-by-customer", serde.String, OrderSerde).
		LeftJoin(table, func(_ string, o Order, c json.RawMessage, found bool) Order {
			out := make(Order, len(o)+1)
			for k, v := range o {
				out[k] = v
			}
			out["customer"] = json.RawMessage("null")
			if found {
				out["customer"] = c
			}
			return out
		}, stream.Named("enrich")).
		To(output, serde.String, serde.JSON[Order](), stream.Named("write-enriched"))
	return b.Build()
}
