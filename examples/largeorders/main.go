// Command largeorders is a worker program of a topology of one's own: the
// orders of at least --min-cents, re-keyed by customer, to --output. All
// it writes is the topology and its flags; txn/service's Main does the
// rest, as for `runner run` (settings from flags, SLUICE_ variables and a
// --config file, logs, metrics and probes, signals, exit codes).
//
//	go build -o bin/ ./examples/largeorders
//	bin/largeorders --brokers 127.0.0.1:9092 --instance w1 --min-cents 50000
//	SLUICE_MIN_CENTS=50000 bin/largeorders --config worker.yaml
//	bin/largeorders --instance w1 --print-config
package main

import (
	"flag"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/service"
)

// Order is an orders record's value.
type Order struct {
	ID         string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Cents      int64  `json:"amount_cents"`
}

func main() {
	service.Main(app)
}

// app is the program's topology with its own flags.
var app = service.App{
	Name: "large-orders",
	Flags: func(fs *flag.FlagSet) func(appID string) (*stream.Topology, error) {
		orders := fs.String("orders", "orders", "orders topic (JSON objects: order_id, customer_id, amount_cents)")
		output := fs.String("output", "large-orders", "sink topic: the large orders, keyed by customer_id")
		minCents := fs.Int64("min-cents", 10_000, "smallest amount_cents of a large order")
		return func(appID string) (*stream.Topology, error) { return build(appID, *orders, *output, *minCents) }
	},
}

// build returns the topology: orders of at least minCents, keyed by
// customer. Orders that are not JSON go to the app's DLQ.
func build(appID, orders, output string, minCents int64) (*stream.Topology, error) {
	b := stream.NewBuilder(appID)
	stream.From(b, orders, serde.String, serde.JSON[Order](), stream.Named("read-orders")).
		Filter(func(_ string, o Order) bool { return o.Cents >= minCents }, stream.Named("large")).
		SelectKey(func(_ string, o Order) string { return o.CustomerID }, stream.Named("by-customer")).
		To(output, serde.String, serde.JSON[Order](), stream.Named("write-large"))
	return b.Build()
}
