package txn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// echoTopology has one sub-topology reading "in"; its tasks echo every
// record, and check that no two goroutines use one task at once.
type echoTopology struct {
	topology.Topology
	overlaps atomic.Int64
	failAt   int64 // a task fails the record with this offset; 0: none
}

func (e *echoTopology) Subtopologies() []topology.Subtopology {
	return []topology.Subtopology{{ID: 0, SourceTopics: []string{"in"}}}
}

func (e *echoTopology) NewTask(id topology.TaskID, _ topology.TaskConfig) (topology.Task, error) {
	return &echoTask{topo: e}, nil
}

type echoTask struct {
	topo *echoTopology
	busy atomic.Bool
}

func (t *echoTask) Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if !t.busy.CompareAndSwap(false, true) {
		t.topo.overlaps.Add(1)
	}
	defer t.busy.Store(false)
	if rec.Offset == t.topo.failAt && t.topo.failAt != 0 {
		return out, errors.New("boom")
	}
	return append(out, &kgo.Record{Topic: "out", Partition: rec.Partition, Offset: rec.Offset}), nil
}
func (t *echoTask) Stats() topology.TaskStats { return topology.TaskStats{} }
func (t *echoTask) Close() error              { return nil }

// poll returns one poll's fetches: per partition of "in", n records from
// offset from on.
func poll(partitions int32, from, n int64) kgo.Fetches {
	ft := kgo.FetchTopic{Topic: "in"}
	for p := range partitions {
		fp := kgo.FetchPartition{Partition: p}
		for o := from; o < from+n; o++ {
			fp.Records = append(fp.Records, &kgo.Record{Topic: "in", Partition: p, Offset: o})
		}
		ft.Partitions = append(ft.Partitions, fp)
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{ft}}}
}

// prepareEcho opens the tasks of f's partitions as the loop does before a
// transaction (Worker.prepareTasks; echo tasks restore nothing).
func prepareEcho(ts *tasks, topo *echoTopology, f kgo.Fetches) error {
	w := &Worker{topo: topo}
	return w.prepareTasks(context.Background(), ts, func() map[string]map[int32]kgo.EpochOffset { return nil }, f)
}

func newEchoTasks(topo *echoTopology) *tasks {
	ts := newTasks(topo, newMetrics(prometheus.NewRegistry(), "app", "0"))
	ts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return ts
}

// Lanes hand every output to the producer, each task's in the order it
// emitted them, and never run one task on two goroutines at once.
func TestLanesKeepEachTaskInOrder(t *testing.T) {
	const partitions, polls, perPoll = 7, 20, 50
	topo := &echoTopology{}
	ts := newEchoTasks(topo)
	var mu sync.Mutex
	got := map[int32][]int64{}
	ls := newLanes(ts, 3, func(r *kgo.Record) {
		mu.Lock()
		got[r.Partition] = append(got[r.Partition], r.Offset)
		mu.Unlock()
	})
	for i := range int64(polls) {
		f := poll(partitions, i*perPoll, perPoll)
		require.NoError(t, prepareEcho(ts, topo, f))
		require.NoError(t, ls.process(f))
	}
	require.Equal(t, partitions*polls*perPoll, ls.close())
	require.Zero(t, topo.overlaps.Load(), "a task ran on two goroutines at once")
	require.Len(t, got, partitions)
	for p, offs := range got {
		require.Len(t, offs, polls*perPoll, "partition %d", p)
		for i, o := range offs {
			require.Equal(t, int64(i), o, fmt.Sprintf("partition %d's outputs out of order", p))
		}
	}
}

// A record that fails on one lane fails the poll, whichever lane it is on.
func TestLanesReturnAFailure(t *testing.T) {
	topo := &echoTopology{failAt: 17}
	ts := newEchoTasks(topo)
	ls := newLanes(ts, 2, func(*kgo.Record) {})
	f := poll(4, 0, 30)
	require.NoError(t, prepareEcho(ts, topo, f))
	err := ls.process(f)
	var fe *FatalError
	require.ErrorAs(t, err, &fe)
	require.ErrorContains(t, err, "boom")
	ls.close()
}

// Lanes never create a task: a poll with a partition whose task prepare
// did not open is refused before any of its records is processed, and
// prepared reports it, so the exactly-once loop aborts the transaction
// and prepares the task outside it.
func TestLanesRefuseAPartitionNotPrepared(t *testing.T) {
	topo := &echoTopology{}
	ts := newEchoTasks(topo)
	var produced int
	ls := newLanes(ts, 2, func(*kgo.Record) { produced++ })
	require.NoError(t, prepareEcho(ts, topo, poll(2, 0, 1)))
	require.True(t, ts.prepared(poll(2, 1, 5)))

	later := poll(3, 1, 5) // partition 2 is new
	require.False(t, ts.prepared(later))
	require.ErrorIs(t, ls.process(later), errUnprepared)
	require.Zero(t, ls.close(), "nothing of the poll was processed")
	require.Len(t, ts.open, 2, "no task was created")
}
