package batch

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
		o    Outcome
		want Step
	}{
		{Committed, Step{Tasks: CommitTasks, CloseRevoked: true}},
		{Aborted, Step{Tasks: DiscardTasks, CloseRevoked: true}},
		{ProduceFailed, Step{Tasks: DropTasks, Recreate: true}},
		{Unknown, Step{Tasks: DropTasks, Recreate: true}},
	} {
		require.Equal(t, tc.want, StepAfter(tc.o), tc.o.String())
	}
}

// Advance takes the step: after a commit a stateful task commits and a
// revoked partition's task closes; after an abort the tasks discard and
// stay open; after an unknown outcome every task closes, revoked or not.
func TestAdvanceTakesTheStep(t *testing.T) {
	c := New(fakeTopology{sources: []string{"in"}}, Config{})
	kept, revoked := &fakeStateful{}, &fakeStateful{}
	c.Add(topology.TaskID{Partition: 0}, kept)
	c.Add(topology.TaskID{Partition: 1}, revoked)

	s, err := c.Advance(Committed, map[string][]int32{"in": {1}})
	require.NoError(t, err)
	require.False(t, s.Recreate)
	require.Equal(t, 1, kept.commits)
	require.Equal(t, 1, revoked.commits, "committed before it closed")
	require.True(t, revoked.closed, "revoked")
	require.False(t, kept.closed)

	s, err = c.Advance(Aborted, nil)
	require.NoError(t, err)
	require.False(t, s.Recreate)
	require.Equal(t, 1, kept.discards)
	require.False(t, kept.closed)

	s, err = c.Advance(Unknown, map[string][]int32{"other": {0}})
	require.NoError(t, err)
	require.True(t, s.Recreate)
	require.True(t, kept.closed)
	require.Zero(t, c.Open())
}
