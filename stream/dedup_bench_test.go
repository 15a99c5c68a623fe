package stream_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDedupStep is the loop goroutine's share of cmd/bench's
// sluice_eos_dedup for one task: DedupByKey(1h).To(out) over keys that
// are all new (each looked up, stored with its index key and
// changelogged), one millisecond of event time apart, state in a
// temporary directory, a commit every 2,500 records. One op is one input
// record.
func BenchmarkDedupStep(b *testing.B) {
	bld := stream.NewBuilder("app")
	stream.From(bld, "in", serde.String, serde.Bytes).
		DedupByKey("ids", serde.String, time.Hour).
		To("out", serde.String, serde.Bytes)
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
	const txnRecords = 2_500
	value := make([]byte, 100)
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var out []*kgo.Record
	var off int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := &kgo.Record{Topic: "in", Key: []byte("id" + strconv.Itoa(i)), Value: value, Timestamp: start.Add(time.Duration(i) * time.Millisecond)}
		if out, err = tk.Process(r, out[:0]); err != nil {
			b.Fatal(err)
		}
		for _, o := range out {
			o.Offset = off
			off++
		}
		if (i+1)%txnRecords == 0 {
			if out, err = tk.(topology.Flusher).Flush(out[:0]); err != nil { // the changelog's packs
				b.Fatal(err)
			}
			for _, o := range out {
				o.Offset = off
				off++
			}
			if err := st.Commit(); err != nil {
				b.Fatal(err)
			}
			tk.(topology.Recycler).Recycle()
		}
	}
}
