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
// interval. The worker's clock is a fake one that only processing
// advances, perRecord a record, so a loaded machine changes nothing.
func TestCollectPollsWhatFitsInTheCommitInterval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perRecord time.Duration
		wantFirst int   // what the first poll of a transaction asks for
		wantAsked []int // what collect's polls ask for after 5 records
	}{
		// 5 records cost 5µs: the rest of the batch fits in one poll.
		{"fast", time.Microsecond, 20_000, []int{20_000 - 5}},
		// 5 records cost 50ms, then 5 more fit in the 50ms left, and the
		// interval is over.
		{"slow", 10 * time.Millisecond, 10, []int{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := began
			w := &Worker{
				cfg: Config{Guarantee: ExactlyOnce, CommitInterval: 100 * time.Millisecond, MaxBatchRecords: 20_000},
				now: func() time.Time { return clock },
			}
			w.pace.observe(1, tc.perRecord)
			require.Equal(t, tc.wantFirst, w.pollRecords(0, w.cfg.CommitInterval))

			// A batch polls the rest of what fits, up to MaxBatchRecords;
			// every poll finds as many records buffered as it asks for.
			var asked []int
			poll := func(_ context.Context, n int) kgo.Fetches {
				asked = append(asked, n)
				return fetchesOf(n)
			}
			processed := 0
			process := func(f kgo.Fetches) error {
				processed += f.NumRecords()
				clock = clock.Add(time.Duration(f.NumRecords()) * tc.perRecord)
				return nil
			}
			records, err := w.collect(context.Background(), fetchesOf(5), poll, process)
			require.NoError(t, err)
			require.Equal(t, records, processed, "every polled record is processed")
			require.Equal(t, tc.wantAsked, asked)
			switch tc.name {
			case "fast":
				require.Equal(t, w.cfg.MaxBatchRecords, records, "the batch is full")
				require.Less(t, clock.Sub(began), w.cfg.CommitInterval, "well within the interval")
			case "slow":
				require.Equal(t, 10, records, "what fits in the interval")
				require.Equal(t, w.cfg.CommitInterval, clock.Sub(began), "the batch ends at the interval")
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
