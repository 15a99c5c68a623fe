package streamtest_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkFilterMapValuesTo measures the per-record step of a
// Filter → MapValues → To chain on the driver. Bytes serdes decode and
// encode without copying, so serde cost is excluded. Outputs are read
// (and so released) every 1024 records.
func BenchmarkFilterMapValuesTo(b *testing.B) {
	bld := stream.NewBuilder("bench")
	stream.From(bld, "in", serde.Bytes, serde.Bytes).
		Filter(func(_, v []byte) bool { return len(v) > 0 }).
		MapValues(func(v []byte) []byte { return v[1:] }).
		To("out", serde.Bytes, serde.Bytes)
	topo, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	d := streamtest.New(topo)
	defer d.Close()
	out := streamtest.Output(d, "out", serde.Bytes, serde.Bytes)
	key, value := []byte("key"), bytes.Repeat([]byte("v"), 100)
	ts := time.Unix(1, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.PipeBytes("in", key, value, ts); err != nil {
			b.Fatal(err)
		}
		if i++; i%1024 == 0 {
			for _, err := range out.Read() {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkFilterMapValuesToBaseline is the same work written by hand on
// Kafka records, with no framework: the baseline BenchmarkFilterMapValuesTo
// is compared with in one run (go test -bench 'FilterMapValuesTo' -count 5).
// It allocates each output record, as a hand-written loop would.
func BenchmarkFilterMapValuesToBaseline(b *testing.B) {
	key, value := []byte("key"), bytes.Repeat([]byte("v"), 100)
	in := &kgo.Record{Topic: "in", Key: key, Value: value, Timestamp: time.Unix(1, 0)}
	out := make([]*kgo.Record, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if len(in.Value) > 0 { // Filter
			v := in.Value[1:] // MapValues
			out = append(out, &kgo.Record{Topic: "out", Key: in.Key, Value: v, Timestamp: in.Timestamp, Headers: in.Headers})
		}
		if len(out) == cap(out) {
			clear(out)
			out = out[:0]
		}
	}
}
