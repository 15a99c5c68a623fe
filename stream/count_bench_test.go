package stream_test

import (
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkCountStep is the loop goroutine's share of cmd/bench's
// sluice_eos_count for one task: GroupByKey().Count().ToStream().To(out)
// over 12,500 keys, state in a temporary directory, a commit every 2,500
// records (the changelog offsets faked), after which the outputs are
// recycled as the runtime does. One op is one input record.
func BenchmarkCountStep(b *testing.B) {
	bld := stream.NewBuilder("app")
	stream.From(bld, "in", serde.String, serde.Bytes).
		GroupByKey(serde.String, serde.Bytes).
		Count("counts").
		ToStream().
		To("out", serde.String, serde.Int64)
	topo, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	tk, err := topo.NewTask(topology.TaskID{}, topology.TaskConfig{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer tk.Close()
	st := tk.(topology.StatefulTask)
	const keys, txnRecords = 12_500, 2_500
	recs := make([]kgo.Record, keys)
	for i := range recs {
		recs[i] = kgo.Record{Topic: "in", Key: []byte("k" + strconv.Itoa(i)), Value: make([]byte, 100)}
	}
	var out []*kgo.Record
	var off int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := &recs[(i*7919)%keys]
		if out, err = tk.Process(r, out[:0]); err != nil {
			b.Fatal(err)
		}
		for _, o := range out { // as the producer acknowledges them
			o.Offset = off
			off++
		}
		if (i+1)%txnRecords == 0 {
			if err := st.Commit(); err != nil {
				b.Fatal(err)
			}
			tk.(topology.Recycler).Recycle()
		}
	}
}
