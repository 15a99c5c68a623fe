package stream_test

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
)

// minuteTotal sums its input in a store and, once a minute of stream
// time, emits the total and starts again.
type minuteTotal struct {
	totals *stream.KeyValueStore[string, int64]
}

func (m *minuteTotal) Init(ctx stream.ProcessorContext) error {
	_, err := stream.Schedule(ctx, time.Minute, stream.StreamTime,
		func(now time.Time, out stream.Emitter[string, int64]) error {
			kv := m.totals.In(ctx)
			n, _, err := kv.Get("total")
			if err != nil {
				return err
			}
			if err := kv.Put("total", 0); err != nil {
				return err
			}
			return out.Emit(stream.NewRecord(now.Format("15:04:05"), n, now))
		})
	return err
}

func (m *minuteTotal) Process(ctx stream.ProcessorContext, rec stream.Record[string, int64], _ stream.Emitter[string, int64]) error {
	kv := m.totals.In(ctx)
	n, _, err := kv.Get("total")
	if err != nil {
		return err
	}
	return kv.Put("total", n+rec.Value())
}

// A stream-time punctuator fires after the first record, then after each
// record that moves the stream time into a later minute; its output and
// its store write belong to that record's transaction.
func ExampleSchedule() {
	b := stream.NewBuilder("totals")
	totals := stream.NewKeyValueStore(b, "totals", serde.String, serde.Int64)
	stream.From(b, "amounts", serde.String, serde.Int64).
		Process(func() *minuteTotal { return &minuteTotal{totals: totals} },
			stream.Named("minute-total"), stream.WithStores(totals)).
		To("totals", serde.String, serde.Int64)
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(topo)
	defer d.Close()
	in := streamtest.Input(d, "amounts", serde.String, serde.Int64)
	for _, r := range []struct {
		at     string
		amount int64
	}{{"12:00:10", 5}, {"12:00:40", 7}, {"12:01:05", 1}, {"12:01:30", 2}, {"12:04:00", 3}} {
		ts, _ := time.Parse(time.DateTime, "2026-11-25 "+r.at)
		_ = in.Pipe("a", r.amount, ts)
	}
	recs, _ := streamtest.Output(d, "totals", serde.String, serde.Int64).ReadAll()
	for _, r := range recs {
		fmt.Printf("%s: %d\n", r.Key, r.Value)
	}
	// Output:
	// 12:00:10: 5
	// 12:01:05: 8
	// 12:04:00: 5
}
