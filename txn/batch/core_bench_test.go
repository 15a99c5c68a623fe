package batch

import (
	"testing"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkOneRecordBatch measures what the core adds to a batch of one
// record (Begin, Process, Finish, Advance), as the test driver runs one
// per piped record; the task echoes the record.
func BenchmarkOneRecordBatch(b *testing.B) {
	topo := &echoTopology{}
	c := New(topo, Config{Inline: true})
	f := poll(1, 0, 1)
	ids, err := c.Missing(f)
	if err != nil {
		b.Fatal(err)
	}
	task, _ := topo.NewTask(ids[0], topology.TaskConfig{})
	c.Add(ids[0], task)
	produce := func(*kgo.Record) {}
	b.ReportAllocs()
	for b.Loop() {
		c.Begin(produce)
		if err := c.Process(f); err != nil {
			b.Fatal(err)
		}
		c.Finish()
		if _, err := c.Advance(Committed, nil); err != nil {
			b.Fatal(err)
		}
	}
}
