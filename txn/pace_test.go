package txn

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestPaceFitsRecordsInTheBudget(t *testing.T) {
	var p pace
	require.Equal(t, firstPoll, p.records(time.Second, 50_000), "nothing measured: the first poll")
	require.Equal(t, 10, p.records(time.Second, 10), "never more than the limit")

	p.observe(1000, time.Millisecond) // 1µs a record
	require.Equal(t, 20_000, p.records(100*time.Millisecond, 20_000))
	require.Equal(t, 5_000, p.records(5*time.Millisecond, 20_000))
	require.Equal(t, 1, p.records(0, 20_000), "a spent budget still polls one record")
	require.Equal(t, 1, p.records(-time.Second, 20_000))
	require.Equal(t, 1, p.records(time.Second, 0), "0 would poll everything buffered")

	p.observe(10, 10*time.Millisecond) // 1ms a record: believed at once
	require.Equal(t, 100, p.records(100*time.Millisecond, 20_000))

	p.observe(1000, time.Millisecond) // fast again: believed gradually
	got := p.records(100*time.Millisecond, 20_000)
	require.Greater(t, got, 100)
	require.Less(t, got, 1000)

	p.observe(0, time.Hour) // nothing processed tells nothing
	require.Equal(t, got, p.records(100*time.Millisecond, 20_000))
}

// The first poll of a transaction takes everything the pace says fits in
// the commit interval: a fast worker drains the buffered fetch at once
// (so franz-go asks for the next one while the transaction runs), while a
// slow one polls a little at a time and ends the transaction at the
// interval.
func TestCollectPollsWhatFitsInTheCommitInterval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perRecord time.Duration
		wantFirst int // what the first poll of a transaction asks for
	}{
		{"fast", time.Microsecond, 20_000},
		{"slow", 10 * time.Millisecond, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{cfg: Config{Guarantee: ExactlyOnce, CommitInterval: 100 * time.Millisecond, MaxBatchRecords: 20_000}}
			w.pace.observe(1, tc.perRecord)
			require.Equal(t, tc.wantFirst, w.pollRecords(0, w.cfg.CommitInterval))

			// A batch polls the rest of what fits, up to MaxBatchRecords.
			var asked []int
			poll := func(_ context.Context, n int) kgo.Fetches {
				asked = append(asked, n)
				return fetchesOf(n)
			}
			processed := 0
			process := func(f kgo.Fetches) error {
				processed += f.NumRecords()
				if tc.perRecord >= time.Millisecond { // what a slow processor costs
					time.Sleep(time.Duration(f.NumRecords()) * tc.perRecord)
				}
				return nil
			}
			b := w.newBatch()
			require.NoError(t, w.collect(context.Background(), fetchesOf(5), b, poll, process))
			require.Equal(t, b.records, processed, "every polled record is processed")
			for _, n := range asked {
				require.GreaterOrEqual(t, n, 1, "never 0, which polls everything buffered")
			}
			switch tc.name {
			case "fast":
				require.Equal(t, []int{20_000 - 5}, asked, "the rest of the batch in one poll")
			case "slow":
				// 5 records (50ms), then what fits in the 50ms left.
				require.LessOrEqual(t, b.records, 10, "polled %v", asked)
			}
		})
	}
}

// fetchesOf returns n records of one partition.
func fetchesOf(n int) kgo.Fetches {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "in", Offset: int64(i)}
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{Partition: 0, Records: recs}}}}}}
}
