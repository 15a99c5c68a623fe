package stream_test

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/sluicehq/sluice/window"
)

type Payment struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"amount_cents"`
}

// Orders joined with the payments that arrive within 10 minutes after
// them (both keyed by order id): a paid order is reported as soon as its
// payment arrives, an unpaid one once its 10 minutes (and a minute of
// grace for out-of-order payments) have passed in stream time.
func ExampleStream_LeftJoinStream() {
	b := stream.NewBuilder("payments-app")
	payments := stream.From(b, "payments", serde.String, serde.JSON[Payment]())
	stream.From(b, "orders", serde.String, serde.JSON[Order]()).
		LeftJoinStream("order-payments", payments, window.Join{After: 10 * time.Minute, Grace: time.Minute},
			func(id string, o Order, p Payment, paid bool) string {
				if !paid {
					return fmt.Sprintf("%s unpaid (%d cents due)", id, o.Cents)
				}
				return fmt.Sprintf("%s paid %d of %d cents", id, p.Cents, o.Cents)
			},
			stream.JoinedWith(serde.String, serde.JSON[Order](), serde.JSON[Payment]())).
		To("order-status", serde.String, serde.String)
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(topo)
	defer d.Close()
	orders := streamtest.Input(d, "orders", serde.String, serde.JSON[Order]())
	pays := streamtest.Input(d, "payments", serde.String, serde.JSON[Payment]())
	out := streamtest.Output(d, "order-status", serde.String, serde.String)
	_ = orders.Pipe("o-1", Order{ID: "o-1", Cents: 2500}, t0)
	_ = orders.Pipe("o-2", Order{ID: "o-2", Cents: 900}, t0.Add(time.Minute))
	_ = pays.Pipe("o-1", Payment{OrderID: "o-1", Cents: 2500}, t0.Add(4*time.Minute))
	_ = pays.Pipe("o-2", Payment{OrderID: "o-2", Cents: 900}, t0.Add(12*time.Minute)) // 11 minutes after o-2: too late to match
	_ = orders.Pipe("o-3", Order{ID: "o-3", Cents: 100}, t0.Add(30*time.Minute))      // stream time passes o-2's window

	recs, _ := out.ReadAll()
	for _, r := range recs {
		fmt.Printf("%s %s\n", r.Timestamp.Format("15:04"), r.Value)
	}
	// Output:
	// 12:04 o-1 paid 2500 of 2500 cents
	// 12:01 o-2 unpaid (900 cents due)
}
