package batch

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeStateful is a StatefulTask whose Commit and Discard report
// applyErr: the failure of its apply (a background apply's failure
// surfaces at the next Commit, or at a Discard).
type fakeStateful struct {
	commits  int
	applyErr error
	discards int
	closed   bool
	recycled int
}

func (f *fakeStateful) Discard() error { f.discards++; return f.applyErr }
func (f *fakeStateful) Recycle()       { f.recycled++ }
func (f *fakeStateful) Commit() error  { f.commits++; return f.applyErr }

func (f *fakeStateful) Process(_ *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	return out, nil
}
func (f *fakeStateful) Stats() topology.TaskStats          { return topology.TaskStats{} }
func (f *fakeStateful) Close() error                       { f.closed = true; return nil }
func (f *fakeStateful) RestoreFrom() map[string]int64      { return map[string]int64{"c": -2, "d": -2} }
func (f *fakeStateful) Restore(*kgo.Record) error          { return nil }
func (f *fakeStateful) RestoreDone(map[string]int64) error { return nil }
func (f *fakeStateful) InputFrom() map[string]int64        { return nil }
func (f *fakeStateful) SeeInput(*kgo.Record)               {}

// A task whose Commit fails (its apply, or an earlier one still running
// when the previous Commit returned, failed) is closed and dropped, so
// that its next record re-creates it from the checkpoint its database
// last applied; the other tasks commit, and every task left may reuse its
// outputs.
func TestCommitDropsTaskWhoseApplyFailed(t *testing.T) {
	c := New(fakeTopology{}, Config{})
	ok, broken := &fakeStateful{}, &fakeStateful{}
	c.Add(topology.TaskID{Partition: 0}, ok)
	c.Add(topology.TaskID{Partition: 1}, broken)
	_, err := c.Advance(Committed, nil)
	require.NoError(t, err)
	require.Equal(t, 2, c.Open())

	broken.applyErr = errors.New("the previous apply failed")
	_, err = c.Advance(Committed, nil)
	require.ErrorIs(t, err, broken.applyErr)
	require.ErrorContains(t, err, "task 0_1 closed")
	require.True(t, broken.closed, "closed: its database misses committed writes")
	require.NotContains(t, c.tasks.open, topology.TaskID{Partition: 1})
	require.Len(t, c.tasks.list, 1)
	require.False(t, ok.closed)
	require.Contains(t, c.tasks.open, topology.TaskID{Partition: 0})
	require.Equal(t, 2, ok.commits)
	require.Equal(t, 2, ok.recycled)
}

// A transaction that did not commit leaves the tasks open: each discards
// its pending state and may reuse its outputs. A task that cannot discard
// (an earlier apply failed) is closed and dropped, to be restored.
func TestDiscardKeepsTasksOpen(t *testing.T) {
	c := New(fakeTopology{}, Config{})
	ok, broken := &fakeStateful{}, &fakeStateful{}
	c.Add(topology.TaskID{Partition: 0}, ok)
	c.Add(topology.TaskID{Partition: 1}, broken)

	broken.applyErr = errors.New("the previous apply failed")
	_, err := c.Advance(Aborted, nil)
	require.ErrorIs(t, err, broken.applyErr)
	require.Equal(t, 1, ok.discards)
	require.False(t, ok.closed)
	require.Equal(t, 1, ok.recycled)
	require.Zero(t, ok.commits)
	require.True(t, broken.closed)
	require.NotContains(t, c.tasks.open, topology.TaskID{Partition: 1})
}

// fakeTopology has one sub-topology reading sources; the tests add its
// tasks themselves.
type fakeTopology struct {
	topology.Topology
	sources []string
}

func (f fakeTopology) Subtopologies() []topology.Subtopology {
	return []topology.Subtopology{{ID: 0, SourceTopics: f.sources}}
}
