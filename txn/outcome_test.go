package txn

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/txn/topology"
)

// What follows each outcome of a batch, without a broker: a commit applies
// the tasks' state, an abort discards it and keeps the tasks, and an
// outcome that leaves the tasks' state or the producer in doubt drops
// the tasks and the session.
func TestStepAfterEachOutcome(t *testing.T) {
	for _, tc := range []struct {
		o    outcome
		want step
	}{
		{batchCommitted, step{tasks: commitTasks, closeRevoked: true}},
		{batchAborted, step{tasks: discardTasks, closeRevoked: true}},
		{batchProduceFailed, step{tasks: dropTasks, recreate: true}},
		{batchUnknown, step{tasks: dropTasks, recreate: true}},
	} {
		require.Equal(t, tc.want, stepAfter(tc.o), tc.o.String())
	}
}

// The step reaches the tasks: after a commit a stateful task commits and
// a revoked partition's task closes; after an abort the tasks discard and
// stay open; after an unknown outcome every task closes.
func TestAfterTakesTheStep(t *testing.T) {
	w := &Worker{}
	ts := newTestTasks()
	ts.subOf = map[string]int{"in": 0}
	kept, revoked := &fakeStateful{}, &fakeStateful{}
	ts.add(topology.TaskID{Partition: 0}, kept)
	ts.add(topology.TaskID{Partition: 1}, revoked)

	w.onRevoked(nil, nil, map[string][]int32{"in": {1}})
	w.after(ts, batchCommitted)
	require.Equal(t, 1, kept.commits)
	require.Equal(t, 1, revoked.commits)
	require.True(t, revoked.closed, "revoked")
	require.False(t, kept.closed)

	w.after(ts, batchAborted)
	require.Equal(t, 1, kept.discards)
	require.False(t, kept.closed)

	w.onRevoked(nil, nil, map[string][]int32{"in": {0}})
	w.after(ts, batchUnknown)
	require.True(t, kept.closed)
	require.Empty(t, ts.open)
	require.Nil(t, w.takeRevoked(), "taken with the tasks")
}
