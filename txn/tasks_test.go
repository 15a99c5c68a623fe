package txn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
	ts := newTestTasks()
	ok, broken := &fakeStateful{}, &fakeStateful{}
	ts.add(topology.TaskID{Partition: 0}, ok)
	ts.add(topology.TaskID{Partition: 1}, broken)
	ts.commit()
	require.Len(t, ts.open, 2)

	broken.applyErr = errors.New("the previous apply failed")
	ts.commit()
	require.True(t, broken.closed, "closed: its database misses committed writes")
	require.NotContains(t, ts.open, topology.TaskID{Partition: 1})
	require.NotContains(t, ts.stateful, topology.TaskID{Partition: 1})
	require.False(t, ok.closed)
	require.Contains(t, ts.open, topology.TaskID{Partition: 0})
	require.Equal(t, 2, ok.commits)
	require.Equal(t, 2, ok.recycled)
}

// A transaction that did not commit leaves the tasks open: each discards
// its pending state and may reuse its outputs. A task that cannot discard
// (an earlier apply failed) is closed and dropped, to be restored.
func TestDiscardKeepsTasksOpen(t *testing.T) {
	ts := newTestTasks()
	ok, broken := &fakeStateful{}, &fakeStateful{}
	ts.add(topology.TaskID{Partition: 0}, ok)
	ts.add(topology.TaskID{Partition: 1}, broken)

	broken.applyErr = errors.New("the previous apply failed")
	ts.discard()
	require.Equal(t, 1, ok.discards)
	require.False(t, ok.closed)
	require.Equal(t, 1, ok.recycled)
	require.Zero(t, ok.commits)
	require.True(t, broken.closed)
	require.NotContains(t, ts.open, topology.TaskID{Partition: 1})
}

func newTestTasks() *tasks {
	ts := newTasks(fakeTopology{}, newMetrics(prometheus.NewRegistry(), "app", "0"))
	ts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return ts
}

// fakeTopology has no sub-topologies: the tests add tasks themselves.
type fakeTopology struct{ topology.Topology }

func (fakeTopology) Subtopologies() []topology.Subtopology { return nil }

// A restore while a transaction is open is refused: it could outlast the
// transaction timeout (tasks are prepared before Begin).
func TestRestoreRefusedWhileATransactionIsOpen(t *testing.T) {
	w := &Worker{}
	w.txnOpen.Store(true)
	err := w.restore(context.Background(), topology.TaskID{Partition: 3}, &fakeStateful{}, nil)
	var fe *FatalError
	require.ErrorAs(t, err, &fe)
	require.ErrorContains(t, err, "task 0_3 restored while a transaction is open")
}
