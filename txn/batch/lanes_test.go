package batch

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

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
	topo      *echoTopology
	busy      atomic.Bool
	processed int64
}

func (t *echoTask) Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if !t.busy.CompareAndSwap(false, true) {
		t.topo.overlaps.Add(1)
	}
	defer t.busy.Store(false)
	t.processed++
	if rec.Offset == t.topo.failAt && t.topo.failAt != 0 {
		return out, errors.New("boom")
	}
	return append(out, &kgo.Record{Topic: "out", Partition: rec.Partition, Offset: rec.Offset}), nil
}
func (t *echoTask) Stats() topology.TaskStats { return topology.TaskStats{Processed: t.processed} }
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

// prepare adds the tasks f needs, as the loop does before a batch (echo
// tasks restore nothing).
func prepare(t *testing.T, c *Core, topo interface {
	NewTask(topology.TaskID, topology.TaskConfig) (topology.Task, error)
}, f kgo.Fetches) {
	t.Helper()
	ids, err := c.Missing(f)
	require.NoError(t, err)
	for _, id := range ids {
		task, err := topo.NewTask(id, topology.TaskConfig{})
		require.NoError(t, err)
		c.Add(id, task)
	}
}

// Lanes hand every output to the producer, each task's in the order it
// emitted them, and never run one task on two goroutines at once; the
// tasks' counters add up over the lanes.
func TestLanesKeepEachTaskInOrder(t *testing.T) {
	const partitions, polls, perPoll = 7, 20, 50
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			topo := &echoTopology{}
			c := New(topo, Config{Lanes: 3, Inline: inline})
			var mu sync.Mutex
			got := map[int32][]int64{}
			for i := range int64(polls) {
				f := poll(partitions, i*perPoll, perPoll)
				prepare(t, c, topo, f)
				c.Begin(func(r *kgo.Record) {
					mu.Lock()
					got[r.Partition] = append(got[r.Partition], r.Offset)
					mu.Unlock()
				})
				require.NoError(t, c.Process(f))
				counts, err := c.Finish()
				require.NoError(t, err)
				require.Equal(t, partitions*perPoll, counts.Produced)
				require.Equal(t, int64(partitions*perPoll), counts.Tasks.Processed)
				_, err = c.Advance(Committed, nil)
				require.NoError(t, err)
			}
			require.Zero(t, topo.overlaps.Load(), "a task ran on two goroutines at once")
			require.Len(t, got, partitions)
			for p, offs := range got {
				require.Len(t, offs, polls*perPoll, "partition %d", p)
				for i, o := range offs {
					require.Equal(t, int64(i), o, fmt.Sprintf("partition %d's outputs out of order", p))
				}
			}
		})
	}
}

// A record that fails on one lane fails the poll, whichever lane it is
// on, with the task and the record named.
func TestLanesReturnAFailure(t *testing.T) {
	topo := &echoTopology{failAt: 17}
	c := New(topo, Config{Lanes: 2})
	f := poll(4, 0, 30)
	prepare(t, c, topo, f)
	c.Begin(func(*kgo.Record) {})
	err := c.Process(f)
	var te *TaskError
	require.ErrorAs(t, err, &te)
	require.ErrorContains(t, err, "boom")
	require.ErrorContains(t, err, "in[0]@17")
	require.Equal(t, int64(17), te.Offset)
	c.Finish()
}

// The core never creates a task: a poll with a partition whose task was
// not added is refused before any of its records is processed, so the
// exactly-once loop aborts the transaction and prepares the task outside
// it.
func TestProcessRefusesAPartitionNotPrepared(t *testing.T) {
	topo := &echoTopology{}
	c := New(topo, Config{Lanes: 2})
	prepare(t, c, topo, poll(2, 0, 1))
	ids, err := c.Missing(poll(2, 1, 5))
	require.NoError(t, err)
	require.Empty(t, ids)

	later := poll(3, 1, 5) // partition 2 is new
	ids, err = c.Missing(later)
	require.NoError(t, err)
	require.Equal(t, []topology.TaskID{{Partition: 2}}, ids)
	c.Begin(func(*kgo.Record) {})
	require.ErrorIs(t, c.Process(later), ErrUnprepared)
	counts, _ := c.Finish()
	require.Zero(t, counts.Produced, "nothing of the poll was processed")
	require.Equal(t, 2, c.Open(), "no task was created")
}

// A topic no sub-topology reads is an error, not a silent skip.
func TestProcessRefusesATopicNotRead(t *testing.T) {
	c := New(&echoTopology{}, Config{})
	f := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "elsewhere", Partitions: []kgo.FetchPartition{{Records: []*kgo.Record{{Topic: "elsewhere"}}}}}}}}
	_, err := c.Missing(f)
	require.ErrorIs(t, err, ErrNotSource)
	c.Begin(func(*kgo.Record) {})
	require.ErrorIs(t, c.Process(f), ErrNotSource)
	c.Finish()
}

// holdingTopology's tasks hold every record's output back until Flush (as
// a store packing its changelog writes does); failFlush makes Flush fail.
type holdingTopology struct {
	echoTopology
	failFlush bool
	flushes   atomic.Int64
}

func (h *holdingTopology) NewTask(topology.TaskID, topology.TaskConfig) (topology.Task, error) {
	return &holdingTask{echoTask: echoTask{topo: &h.echoTopology}, topo: h}, nil
}

type holdingTask struct {
	echoTask
	topo *holdingTopology
	held []*kgo.Record
}

func (t *holdingTask) Process(rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	t.held = append(t.held, &kgo.Record{Topic: "held", Partition: rec.Partition, Offset: rec.Offset})
	return t.echoTask.Process(rec, out)
}

func (t *holdingTask) Flush(out []*kgo.Record) ([]*kgo.Record, error) {
	t.topo.flushes.Add(1)
	out = append(out, t.held...)
	t.held = t.held[:0]
	if t.topo.failFlush {
		return out, errors.New("state failed")
	}
	return out, nil
}

// What a task holds back (a Flusher) is produced in the batch: after each
// poll's records, on the task's lane, and by Finish for what is left; a
// failed Flush fails Finish, naming the task, so that the batch does not
// commit.
func TestHeldRecordsAreProducedInTheBatch(t *testing.T) {
	const partitions, perPoll = 5, 40
	topo := &holdingTopology{}
	c := New(topo, Config{Lanes: 2})
	var mu sync.Mutex
	held := map[int32][]int64{}
	f := poll(partitions, 0, perPoll)
	prepare(t, c, topo, f)
	c.Begin(func(r *kgo.Record) {
		if r.Topic == "held" {
			mu.Lock()
			held[r.Partition] = append(held[r.Partition], r.Offset)
			mu.Unlock()
		}
	})
	require.NoError(t, c.Process(f))
	require.EqualValues(t, partitions, topo.flushes.Load(), "each task flushed after its poll")
	require.NoError(t, c.Process(poll(partitions, perPoll, perPoll)))
	counts, err := c.Finish()
	require.NoError(t, err)
	require.Equal(t, 4*partitions*perPoll, counts.Produced, "outputs and held records of both polls")
	for p := range int32(partitions) {
		require.Len(t, held[p], 2*perPoll, "partition %d", p)
	}
	require.EqualValues(t, 3*partitions, topo.flushes.Load(), "after each poll, and once more by Finish")
	_, err = c.Advance(Committed, nil)
	require.NoError(t, err)

	topo.failFlush = true
	c.Begin(func(*kgo.Record) {})
	err = c.Process(poll(1, 2*perPoll, 1))
	var te *TaskError
	require.ErrorAs(t, err, &te, "a failed flush after a poll fails the poll")
	_, err = c.Finish()
	require.ErrorContains(t, err, "task 0_0: flush: state failed")
}
