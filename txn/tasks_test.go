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
func (f *fakeStateful) RestoreFrom() map[string]int64      { return map[string]int64{"c": -2, "d": -2} }
func (f *fakeStateful) Restore(*kgo.Record) error          { return nil }
func (f *fakeStateful) RestoreDone(map[string]int64) error { return nil }
func (f *fakeStateful) InputFrom() map[string]int64        { return nil }
func (f *fakeStateful) SeeInput(*kgo.Record)               {}
func (f *fakeStateful) Commit(next map[string]int64) error {
	f.commits = append(f.commits, next)
	return f.applyErr
}

// A task whose Commit fails (its apply, or an earlier one still running
// when the previous Commit returned, failed) is closed and dropped, so
// that its next record re-creates it from the checkpoint its database
// last applied; the other tasks commit their own partition's offsets.
func TestCommitDropsTaskWhoseApplyFailed(t *testing.T) {
	ts := newTestTasks()
	ok, broken := &fakeStateful{}, &fakeStateful{}
	ts.add(TaskID{Partition: 0}, ok)
	ts.add(TaskID{Partition: 1}, broken)

	ts.tails[TaskID{Partition: 0}].see(&kgo.Record{Topic: "c", Offset: 9})
	ts.tails[TaskID{Partition: 1}].see(&kgo.Record{Topic: "c", Offset: 19})
	ts.commit()
	require.Len(t, ts.open, 2)

	broken.applyErr = errors.New("the previous apply failed")
	ts.tails[TaskID{Partition: 0}].see(&kgo.Record{Topic: "c", Offset: 10})
	ts.tails[TaskID{Partition: 1}].see(&kgo.Record{Topic: "c", Offset: 20})
	ts.commit()
	require.True(t, broken.closed, "closed: its database misses committed writes")
	require.NotContains(t, ts.open, TaskID{Partition: 1})
	require.NotContains(t, ts.tails, TaskID{Partition: 1})
	require.False(t, ok.closed)
	require.Contains(t, ts.open, TaskID{Partition: 0})
	require.Equal(t, []map[string]int64{{"c": 10}, {"c": 11}}, ok.commits)
}

func newTestTasks() *tasks {
	ts := newTasks(fakeTopology{}, TaskConfig{}, newMetrics(prometheus.NewRegistry(), "app", "0"))
	ts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return ts
}

// fakeTopology has no sub-topologies: the tests add tasks themselves.
type fakeTopology struct{ Topology }

func (fakeTopology) Subtopologies() []Subtopology { return nil }

// A task's checkpoint moves to the offset after the last record it
// produced to each changelog in the transaction; its other outputs do not
// count, a changelog it did not write is left out, and so is one whose
// last record has no offset (the checkpoint stays behind: a longer
// replay, never a lost write).
func TestCommitMovesCheckpointsToLastChangelogRecords(t *testing.T) {
	ts := newTestTasks()
	st := &fakeStateful{}
	id := TaskID{Partition: 3}
	ts.add(id, st)
	tail := ts.tails[id]
	for _, r := range []*kgo.Record{
		{Topic: "c", Offset: 4}, {Topic: "out", Offset: 100}, {Topic: "c", Offset: 5},
		{Topic: "dlq", Offset: 7}, {Topic: "c", Offset: 6}, {Topic: "out", Offset: 101},
	} {
		tail.see(r)
	}
	ts.commit()
	tail.see(&kgo.Record{Topic: "d", Offset: -1})
	ts.commit()
	ts.commit()
	require.Equal(t, []map[string]int64{{"c": 7}, {}, {}}, st.commits)
}
