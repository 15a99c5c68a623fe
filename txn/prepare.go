package txn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	return w.createTasks(ctx, c, ids, committed())
}

// createTasks creates and restores tasks ids, in parallel, and adds those
// made to the core; all holds the offsets their consumption starts from.
func (w *Worker) createTasks(ctx context.Context, c *batch.Core, ids []topology.TaskID, all map[string]map[int32]kgo.EpochOffset) error {
	if len(ids) == 0 {
		return nil
	}
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

// betweenBatches is what each guarantee's loop does after a poll, while
// no transaction is open: it closes the tasks of revoked partitions,
// creates and restores those of partitions assigned (prepareAssigned),
// and answers the queries waiting (serveQueries). Its error, a failed
// restore, ends the session.
func (w *Worker) betweenBatches(ctx context.Context, c *batch.Core) error {
	w.closeRevoked(c)
	if err := w.prepareAssigned(ctx, c); err != nil {
		return err
	}
	w.serveQueries(c)
	return nil
}

// startOffsets hands the loop, for one session, the partitions assigned
// to it with the offsets their consumption starts from, so that the loop
// creates and restores their tasks before the transaction that would
// first meet their records (prepareAssigned), and so that a partition
// that gets no records has its task all the same (readiness, queries).
// Tasks created only when their first records come would leave a quiet
// partition's task closed, and would abort (abortNewTask), at every
// start, the transactions whose polls meet the partitions the first poll
// did not bring.
//
// The group's callbacks write it, the loop and Health read it; it is
// guarded by its own mutex.
type startOffsets struct {
	mu sync.Mutex
	// awaiting is set while partitions are assigned whose offsets the
	// session has not fetched yet.
	awaiting bool
	// offsets are the partitions whose offsets are fetched and whose tasks
	// the loop has not prepared yet: where consumption starts (the
	// group's committed offset, or kgo's start sentinel when none).
	offsets map[string]map[int32]kgo.EpochOffset
}

// newStartOffsets returns the startOffsets of a new session, which the
// session's group callbacks fill, and makes it the one the loop and
// Health read.
func (w *Worker) newStartOffsets() *startOffsets {
	s := &startOffsets{offsets: map[string]map[int32]kgo.EpochOffset{}}
	w.starts.Store(s)
	return s
}

// assigned notes partitions assigned, whose offsets are fetched next.
func (s *startOffsets) assigned(parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range parts {
		if len(ps) > 0 {
			s.awaiting = true
		}
	}
}

// offsetsFetched returns the session's AdjustFetchOffsetsFn: it keeps
// where each partition just assigned starts, changing none, and wakes the
// loop.
func (w *Worker) offsetsFetched(s *startOffsets) func(context.Context, map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	return func(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
		s.mu.Lock()
		for topic, ps := range offsets {
			if s.offsets[topic] == nil {
				s.offsets[topic] = map[int32]kgo.EpochOffset{}
			}
			for p, o := range ps {
				s.offsets[topic][p] = o.EpochOffset()
			}
		}
		s.awaiting = false
		s.mu.Unlock()
		w.mu.Lock()
		if w.wake != nil {
			w.wake() // an idle loop prepares the tasks now
		}
		w.mu.Unlock()
		return offsets, nil
	}
}

// revoked forgets revoked or lost partitions. A fetch of offsets still
// awaited is no longer: the rebalance that revokes cancels it, and the
// next assignment fetches again.
func (s *startOffsets) revoked(parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.awaiting = false
	for topic, ps := range parts {
		for _, p := range ps {
			delete(s.offsets[topic], p)
		}
	}
}

// pending reports whether partitions are assigned whose tasks the loop
// has not prepared from their start offsets yet.
func (s *startOffsets) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.awaiting {
		return true
	}
	for _, ps := range s.offsets {
		if len(ps) > 0 {
			return true
		}
	}
	return false
}

// prepareAssigned creates and restores the tasks of the partitions
// assigned to the session whose start offsets are fetched, if the core
// does not hold them open, each restored up to where its consumption
// starts. The loop calls it while no transaction is open, after each
// poll. A task whose source partitions did not all come in one fetch
// (the balancer assigns a task's partitions together, so never) is left
// to prepareTasks, which creates it when its records come.
func (w *Worker) prepareAssigned(ctx context.Context, c *batch.Core) error {
	s := w.starts.Load()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	all := make(map[string]map[int32]kgo.EpochOffset, len(s.offsets))
	for topic, ps := range s.offsets {
		all[topic] = maps.Clone(ps)
	}
	s.mu.Unlock()
	var ids []topology.TaskID
	for _, sub := range w.topo.Subtopologies() {
		if len(sub.SourceTopics) == 0 {
			continue
		}
		for p := range all[sub.SourceTopics[0]] {
			id := topology.TaskID{Subtopology: sub.ID, Partition: p}
			whole := !slices.ContainsFunc(sub.SourceTopics, func(topic string) bool {
				_, ok := all[topic][p]
				return !ok
			})
			if whole && !c.Has(id) {
				ids = append(ids, id)
			}
		}
	}
	err := w.createTasks(ctx, c, ids, all)
	// Forget what was handled, unless a new assignment changed it meanwhile.
	s.mu.Lock()
	for topic, ps := range all {
		for p, o := range ps {
			if s.offsets[topic][p] == o {
				delete(s.offsets[topic], p)
			}
		}
	}
	s.mu.Unlock()
	return err
}
