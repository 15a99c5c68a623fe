package stream_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

type Order struct {
	ID         string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Cents      int64  `json:"amount_cents"`
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// A topology that keeps large orders, re-keys them by customer and writes a
// summary line, run on the test driver.
func Example() {
	b := stream.NewBuilder("orders-app")
	stream.From(b, "orders", serde.String, serde.JSON[Order]()).
		Filter(func(_ string, o Order) bool { return o.Cents >= 10_000 }).
		SelectKey(func(_ string, o Order) string { return o.CustomerID }).
		MapValues(func(o Order) string { return fmt.Sprintf("%s: %d.%02d", o.ID, o.Cents/100, o.Cents%100) }).
		To("large-orders", serde.String, serde.String)
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "orders", serde.String, serde.JSON[Order]())
	out := streamtest.Output(d, "large-orders", serde.String, serde.String)
	_ = in.Pipe("o-1", Order{ID: "o-1", CustomerID: "c-7", Cents: 25_000}, t0)
	_ = in.Pipe("o-2", Order{ID: "o-2", CustomerID: "c-8", Cents: 300}, t0)
	_ = in.Pipe("o-3", Order{ID: "o-3", CustomerID: "c-8", Cents: 10_050}, t0)

	recs, _ := out.ReadAll()
	for _, r := range recs {
		fmt.Printf("%s -> %s\n", r.Key, r.Value)
	}
	// Output:
	// c-7 -> o-1: 250.00
	// c-8 -> o-3: 100.50
}

// Split sends each record to the first branch whose predicate matches; a
// branch without a predicate takes the rest.
func ExampleStream_Split() {
	b := stream.NewBuilder("router")
	branches := stream.From(b, "events", serde.String, serde.String).
		Split([]stream.Branch[string, string]{
			{Name: "errors", Pred: func(_, v string) bool { return strings.HasPrefix(v, "ERROR") }},
			{Name: "warnings", Pred: func(_, v string) bool { return strings.HasPrefix(v, "WARN") }},
			{Name: "rest"},
		}, stream.Named("by-level"))
	branches[0].To("errors", serde.String, serde.String)
	branches[1].Merge(branches[2]).To("other", serde.String, serde.String)
	topo, _ := b.Build()

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "events", serde.String, serde.String)
	for _, v := range []string{"ERROR disk full", "INFO started", "WARN slow"} {
		_ = in.Pipe("host-1", v, t0)
	}
	for _, topic := range []string{"errors", "other"} {
		recs, _ := streamtest.Output(d, topic, serde.String, serde.String).ReadAll()
		for _, r := range recs {
			fmt.Printf("%s: %s\n", topic, r.Value)
		}
	}
	// Output:
	// errors: ERROR disk full
	// other: INFO started
	// other: WARN slow
}

// splitter is a user Processor: it emits one record per word, with new key
// and value types, and fails on empty input.
type splitter struct{}

func (splitter) Process(ctx stream.ProcessorContext, rec stream.Record[string, string], out stream.Emitter[string, int64]) error {
	if rec.Value() == "" {
		return errors.New("empty line")
	}
	for _, w := range strings.Fields(rec.Value()) {
		if err := out.Emit(rec.WithKey(w).WithValue(int64(len(w)))); err != nil {
			return err
		}
	}
	return nil
}

// Process runs a user Processor; its errors go to the dead-letter topic by
// default, with headers naming where the failing record came from.
func ExampleStream_Process() {
	b := stream.NewBuilder("words")
	stream.From(b, "lines", serde.String, serde.String).
		Process(func() splitter { return splitter{} }, stream.Named("split-words")).
		To("word-lengths", serde.String, serde.Int64)
	topo, _ := b.Build()

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "lines", serde.String, serde.String)
	_ = in.Pipe("l1", "exactly once", t0)
	_ = in.Pipe("l2", "", t0)

	words, _ := streamtest.Output(d, "word-lengths", serde.String, serde.Int64).ReadAll()
	for _, r := range words {
		fmt.Printf("%s=%d\n", r.Key, r.Value)
	}
	dead, _ := d.DLQ().ReadAll()
	for _, r := range dead {
		fmt.Printf("dlq: key=%s from %s[%s]@%s: %s\n", r.Key, r.Header(stream.HeaderTopic),
			r.Header(stream.HeaderPartition), r.Header(stream.HeaderOffset), r.Header(stream.HeaderError))
	}
	// Output:
	// exactly=7
	// once=4
	// dlq: key=l2 from lines[0]@1: stream: node split-words: empty line
}

// Build reports every mistake at once, each saying what to fix.
func ExampleBuilder_Build() {
	b := stream.NewBuilder("broken")
	stream.From(b, "in", serde.String, serde.String).To("in", serde.String, nil)
	_, err := b.Build()
	fmt.Println(err)
	// Output:
	// stream: sink sink-0001 (topic "in") has no value serde: pass one to To
	// stream: cycle through topics: sub-topology 0 writes "in", read by sub-topology 0: records would be processed forever; write to a topic the topology does not read
}

// Describe prints the topology in the shape of Kafka Streams'
// TopologyDescription.
func ExampleTopology_Describe() {
	b := stream.NewBuilder("describe-me")
	stream.From(b, "in", serde.String, serde.String, stream.Named("read-in")).
		Filter(func(_, v string) bool { return v != "" }, stream.Named("non-empty")).
		To("out", serde.String, serde.String, stream.Named("write-out"))
	topo, _ := b.Build()
	fmt.Print(topo.Describe())
	// Output:
	// Topology: describe-me (errors: dlq)
	//   Sub-topology: 0
	//     Source: read-in (topics: [in])
	//       --> non-empty
	//     Processor: non-empty (filter)
	//       --> write-out
	//       <-- read-in
	//     Sink: write-out (topic: out)
	//       <-- non-empty
	//   Internal topics:
	//     describe-me-dlq (dlq)
}

// Dedup drops the repeats of an id within a span of event time. The
// stream must be partitioned so that an id's repeats reach one task: here
// the id is the key.
func ExampleStream_Dedup() {
	b := stream.NewBuilder("payments")
	stream.From(b, "payments", serde.String, serde.String).
		Dedup("payment-ids", func(paymentID, _ string) string { return paymentID }, serde.String, time.Hour).
		To("payments-once", serde.String, serde.String)
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "payments", serde.String, serde.String)
	_ = in.Pipe("p-1", "10.00 EUR", t0)
	_ = in.Pipe("p-1", "10.00 EUR", t0.Add(time.Minute)) // a retry: dropped
	_ = in.Pipe("p-2", "7.50 EUR", t0.Add(2*time.Minute))
	_ = in.Pipe("p-1", "10.00 EUR", t0.Add(90*time.Minute)) // an hour later: passes

	recs, _ := streamtest.Output(d, "payments-once", serde.String, serde.String).ReadAll()
	for _, r := range recs {
		fmt.Printf("%s %s at %s\n", r.Key, r.Value, r.Timestamp.Format("15:04"))
	}
	fmt.Println("duplicates dropped:", d.Stats().Duplicates)
	// Output:
	// p-1 10.00 EUR at 12:00
	// p-2 7.50 EUR at 12:02
	// p-1 10.00 EUR at 13:30
	// duplicates dropped: 1
}
