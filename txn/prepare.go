package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
)

// prepareTasks creates and restores the tasks that the partitions with
// records in f need and that the core does not hold open, and adds them
// to it. The loop calls it only while no transaction is open: it is I/O (each
// task opens its database and reads its changelogs' ends and tails over
// its own connection). New tasks are created in parallel: a worker taking
// over or restarting with many tasks would otherwise wait for them one
// after another. committed returns the group's committed offsets as the
// session's client knows them (Client.CommittedOffsets): where processing
// resumes.
func (w *Worker) prepareTasks(ctx context.Context, c *batch.Core, committed func() map[string]map[int32]kgo.EpochOffset, f kgo.Fetches) error {
	ids, err := c.Missing(f)
	if err != nil || len(ids) == 0 {
		return err
	}
	return w.openTasks(ctx, c, ids, committed())
}

// openTasks creates and restores tasks ids, in parallel, and adds them
// to the core; all holds the group's committed offsets, where processing
// resumes. The loop calls it only while no transaction is open.
func (w *Worker) openTasks(ctx context.Context, c *batch.Core, ids []topology.TaskID, all map[string]map[int32]kgo.EpochOffset) error {
	made := make([]topology.Task, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, maxParallelTaskCreations)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			made[i], errs[i] = w.createTask(ctx, id, committedOf(all, c.SourcesOf(id), id.Partition))
		})
	}
	wg.Wait()
	for i, t := range made {
		if t != nil {
			c.Add(ids[i], t)
		}
	}
	w.setTasks(c.Open())
	return errors.Join(errs...)
}

// maxParallelTaskCreations bounds the tasks prepareTasks creates at once.
const maxParallelTaskCreations = 8

// createTask instantiates task id and restores its state, committed
// holding the committed offset of each of its source partitions (-1:
// none yet). It may run for several tasks at once (Topology.NewTask and restore
// are safe for that).
func (w *Worker) createTask(ctx context.Context, id topology.TaskID, committed map[string]int64) (topology.Task, error) {
	t, err := w.topo.NewTask(id, w.taskConfig())
	if err != nil {
		return nil, &FatalError{Cause: fmt.Sprintf("creating task %d_%d failed", id.Subtopology, id.Partition), Err: err}
	}
	if st, ok := t.(topology.StatefulTask); ok {
		if err := w.restore(ctx, id, st, committed); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// committedOf returns, of the group's committed offsets all, those of
// partition p of topics: -1 for a topic with none yet.
func committedOf(all map[string]map[int32]kgo.EpochOffset, topics []string, p int32) map[string]int64 {
	offs := map[string]int64{}
	for _, topic := range topics {
		offs[topic] = -1 // no commit: processing starts at the start
		if eo, ok := all[topic][p]; ok && eo.Offset >= 0 {
			offs[topic] = eo.Offset
		}
	}
	return offs
}
