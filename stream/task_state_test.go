package stream_test

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
)

// A stateful task that discards a transaction goes on from its last
// commit: its count, its stream time and its input position are what they
// were at the commit, and it stays open. (The runtime discards every
// transaction that did not commit, DESIGN.md invariant 5.)
func TestDiscardGoesBackToTheLastCommit(t *testing.T) {
	b := stream.NewBuilder("app")
	in := stream.From(b, "in", serde.String, serde.String)
	in.GroupByKey(serde.String, serde.String).
		Count("counts").
		ToStream().
		To("out", serde.String, serde.Int64)
	in.Process(func() stream.ProcessorFunc[string, string, string, string] {
		return func(ctx stream.ProcessorContext, r stream.Record[string, string], out stream.Emitter[string, string]) error {
			return out.Emit(r.WithValue(strconv.FormatInt(ctx.StreamTime().Unix()-epoch.Unix(), 10)))
		}
	}).To("times", serde.String, serde.String)
	tk := newTask(t, b, topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	st := tk.(topology.StatefulTask)

	// process runs one record, acknowledges its outputs (the changelog's
	// offset is the count's) and returns the count and the stream time
	// (in seconds) it emitted.
	process := func(offset int64, sec int) (count int64, streamTime string) {
		t.Helper()
		out, err := tk.Process(kafkaRecord("in", 0, offset, "k", "v", at(sec)), nil)
		require.NoError(t, err)
		for _, r := range out {
			r.Offset = offset
			switch r.Topic {
			case "out":
				count = int64(binary.BigEndian.Uint64(r.Value))
			case "times":
				streamTime = string(r.Value)
			}
		}
		return count, streamTime
	}
	requireProcess := func(offset int64, sec int, count int64, streamTime string) {
		t.Helper()
		c, st := process(offset, sec)
		require.Equal(t, count, c, "count after offset %d", offset)
		require.Equal(t, streamTime, st, "stream time after offset %d", offset)
	}
	requireProcess(0, 10, 1, "10")
	requireProcess(1, 20, 2, "20")
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"in": 2}, st.InputFrom())
	require.Equal(t, map[string]int64{"app-counts-changelog": 2}, st.RestoreFrom())

	requireProcess(2, 90, 3, "90")
	requireProcess(3, 95, 4, "95")
	require.Equal(t, map[string]int64{"in": 4}, st.InputFrom())
	require.NoError(t, st.Discard())
	require.Equal(t, map[string]int64{"in": 2}, st.InputFrom(), "the input position of the commit")
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"app-counts-changelog": 2}, st.RestoreFrom(), "the discarded changelog records do not count")

	// The same offsets again, as franz-go rewinds to the committed
	// offset: the count goes on from 2 and the stream time from 20 s.
	requireProcess(2, 30, 3, "30")
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"app-counts-changelog": 3}, st.RestoreFrom())
}

// A task's checkpoint moves each changelog to the offset after the last
// record of it that the transaction wrote, as the producer acknowledged
// it: the task's other outputs do not count, a store not written keeps its
// offset, and a record whose offset the producer does not know (-1) leaves
// its changelog behind (a longer replay, never a lost write). The offsets
// are taken before the outputs' memory is reused.
func TestCommitMovesCheckpointsToLastChangelogRecords(t *testing.T) {
	b := stream.NewBuilder("app")
	in := stream.From(b, "in", serde.String, serde.String)
	in.GroupByKey(serde.String, serde.String).Count("c").ToStream().To("out", serde.String, serde.Int64)
	in.Filter(func(k, _ string) bool { return k == "both" }).
		GroupByKey(serde.String, serde.String).Count("d").ToStream().To("out2", serde.String, serde.Int64)
	tk := newTask(t, b, topology.TaskID{}, topology.TaskConfig{StateDir: t.TempDir()})
	st := tk.(topology.StatefulTask)

	offsets := map[string]int64{}
	// process runs one record and acknowledges its outputs, each topic's
	// at its next offset, or -1 for unknown.
	process := func(key string, unknown bool) {
		t.Helper()
		out, err := tk.Process(kafkaRecord("in", 0, offsets["in"], key, "v", at(1)), nil)
		require.NoError(t, err)
		offsets["in"]++
		for _, r := range out {
			r.Offset = offsets[r.Topic]
			offsets[r.Topic]++
			if unknown {
				r.Offset = -1
			}
		}
	}
	process("a", false)
	process("both", false)
	process("a", false)
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"app-c-changelog": 3, "app-d-changelog": 1}, st.RestoreFrom())

	process("b", false)
	tk.(topology.Recycler).Recycle() // as the streamtest driver does after every record
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"app-c-changelog": 4, "app-d-changelog": 1}, st.RestoreFrom())

	process("both", true)
	require.NoError(t, st.Commit())
	require.Equal(t, map[string]int64{"app-c-changelog": 4, "app-d-changelog": 1}, st.RestoreFrom(), "unknown offsets leave the checkpoints")
}
