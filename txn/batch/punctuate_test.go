package batch

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fakePunctuator is a Punctuator with one wall-clock punctuator, due at
// due, that emits one record naming its task; failing makes it fail.
type fakePunctuator struct {
	name    string
	due     time.Time
	fired   []time.Time
	settled []bool
	failing error
}

func (f *fakePunctuator) Process(_ *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	return out, nil
}
func (f *fakePunctuator) Stats() topology.TaskStats {
	return topology.TaskStats{Processed: int64(len(f.fired))}
}
func (f *fakePunctuator) Close() error          { return nil }
func (f *fakePunctuator) Settle(committed bool) { f.settled = append(f.settled, committed) }

func (f *fakePunctuator) NextWallClock() (time.Time, bool) { return f.due, !f.due.IsZero() }

func (f *fakePunctuator) Punctuate(now time.Time, out []*kgo.Record) ([]*kgo.Record, error) {
	f.fired = append(f.fired, now)
	f.due = now.Add(time.Minute)
	return append(out, &kgo.Record{Topic: "out", Value: []byte(f.name)}), f.failing
}

// Punctuate runs, inside the batch, the wall-clock punctuators of the
// tasks that are due at the time it is given, hands their outputs to
// produce through their lanes, counts them, and tells every punctuating
// task how the batch ended; a task's failure is a *PunctuationError.
func TestCorePunctuate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(fakeTopology{}, Config{Lanes: 2})
	due := &fakePunctuator{name: "due", due: t0}
	later := &fakePunctuator{name: "later", due: t0.Add(time.Second)}
	none := &fakePunctuator{name: "none"}
	c.Add(topology.TaskID{Partition: 0}, due)
	c.Add(topology.TaskID{Partition: 1}, later)
	c.Add(topology.TaskID{Partition: 2}, none)
	next, ok := c.NextPunctuation()
	require.True(t, ok)
	require.Equal(t, t0, next)

	var mu sync.Mutex
	var produced []string
	c.Begin(func(r *kgo.Record) {
		mu.Lock()
		defer mu.Unlock()
		produced = append(produced, string(r.Value))
	})
	require.NoError(t, c.Punctuate(t0))
	counts, err := c.Finish()
	require.NoError(t, err)
	require.Equal(t, []string{"due"}, produced)
	require.Equal(t, 1, counts.Produced)
	require.Equal(t, int64(1), counts.Tasks.Processed)
	require.Equal(t, []time.Time{t0}, due.fired)
	require.Empty(t, later.fired)
	next, _ = c.NextPunctuation()
	require.Equal(t, t0.Add(time.Second), next)
	_, err = c.Advance(Committed, nil)
	require.NoError(t, err)

	later.failing = errors.New("boom")
	c.Begin(func(*kgo.Record) {})
	err = c.Punctuate(t0.Add(time.Second))
	c.Finish()
	var pe *PunctuationError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, topology.TaskID{Partition: 1}, pe.Task)
	require.ErrorIs(t, err, later.failing)
	_, err = c.Advance(Aborted, nil)
	require.NoError(t, err)
	for _, f := range []*fakePunctuator{due, later, none} {
		require.Equal(t, []bool{true, false}, f.settled, f.name)
	}
}
