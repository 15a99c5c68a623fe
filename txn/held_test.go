package txn

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Every assignment the member's balancer decodes revokes what the
// previous one held and this one does not, whether or not franz-go's
// callback reports it (its transactional session reports one revocation
// per transaction and swallows the next); a partition revoked by both is
// revoked once.
func TestAssignmentsRevokeWhatTheyDrop(t *testing.T) {
	w := &Worker{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := &heldPartitions{w: w}
	b := newTaskBalancer(nil, h.synced)
	sync := func(parts map[string][]int32) {
		t.Helper()
		a := kmsg.NewConsumerMemberAssignment()
		for topic, ps := range parts {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic, at.Partitions = topic, ps
			a.Topics = append(a.Topics, at)
		}
		got, err := b.ParseSyncAssignment(a.AppendTo(nil))
		require.NoError(t, err)
		require.Len(t, got, len(parts))
	}

	sync(map[string][]int32{"in": {0, 1, 2, 3}, "table": {0, 1, 2, 3}})
	require.Empty(t, w.takeRevoked(), "a first assignment revokes nothing")

	sync(map[string][]int32{"in": {0, 1}, "table": {0, 1}})
	w.onRevoked(t.Context(), nil, map[string][]int32{"in": {2, 3}, "table": {2, 3}}) // franz-go's callback, first revocation
	require.Equal(t, map[string][]int32{"in": {2, 3}, "table": {2, 3}}, w.takeRevoked())

	// The second revocation of one transaction: franz-go's session
	// swallows the callback.
	sync(map[string][]int32{"in": {0}, "table": {0}})
	require.Equal(t, map[string][]int32{"in": {1}, "table": {1}}, w.takeRevoked())

	// Given back: nothing is revoked, and the task opens anew.
	sync(map[string][]int32{"in": {0, 1}, "table": {0, 1}})
	require.Empty(t, w.takeRevoked())

	// After the session lost everything, the next assignment is a first.
	h.forget()
	sync(map[string][]int32{"in": {3}, "table": {3}})
	require.Empty(t, w.takeRevoked())
}
