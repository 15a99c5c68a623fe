package txn

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeStateful is a StatefulTask whose Commit reports applyErr: the
// failure of its apply (a background apply's failure surfaces at the next
// Commit).
type fakeStateful struct {
	commits  []map[string]int64
	applyErr error
	closed   bool
}

func (f *fakeStateful) Process(_ *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	return out, nil
}
func (f *fakeStateful) Stats() TaskStats                   { return TaskStats{} }
func (f *fakeStateful) Close() error                       { f.closed = true; return nil }
func (f *fakeStateful) RestoreFrom() map[string]int64      { return nil }
func (f *fakeStateful) Restore(*kgo.Record) error          { return nil }
func (f *fakeStateful) RestoreDone(map[string]int64) error { return nil }
func (f *fakeStateful) Commit(next map[string]int64) error {
	f.commits = append(f.commits, next)
	return f.applyErr
}

// A task whose Commit fails (its apply, or an earlier one still running
// when the previous Commit returned, failed) is closed and dropped, so
// that its next record re-creates it from the checkpoint its database
// last applied; the other tasks commit their own partition's offsets.
func TestCommitDropsTaskWhoseApplyFailed(t *testing.T) {
	ts := &tasks{
		open:    map[TaskID]Task{},
		metrics: newMetrics(prometheus.NewRegistry(), "app", "0"),
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ok, broken := &fakeStateful{}, &fakeStateful{}
	ts.open[TaskID{Partition: 0}] = ok
	ts.open[TaskID{Partition: 1}] = broken

	next := map[int32]map[string]int64{0: {"c": 10}, 1: {"c": 20}}
	ts.commit(next)
	require.Len(t, ts.open, 2)

	broken.applyErr = errors.New("the previous apply failed")
	next = map[int32]map[string]int64{0: {"c": 11}, 1: {"c": 21}}
	ts.commit(next)
	require.True(t, broken.closed, "closed: its database misses committed writes")
	require.NotContains(t, ts.open, TaskID{Partition: 1})
	require.False(t, ok.closed)
	require.Contains(t, ts.open, TaskID{Partition: 0})
	require.Equal(t, []map[string]int64{{"c": 10}, {"c": 11}}, ok.commits)
}
