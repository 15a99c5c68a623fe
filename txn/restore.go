package txn

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restore replays a stateful task's changelogs from its checkpoint to their
// current read_committed end, so that the task starts from exactly the
// state its committed input produced. Transactions that aborted are never
// seen; transactions that committed after the checkpoint (a crash between
// the Kafka commit and the local apply, or an unknown outcome) are.
//
// committed holds the group's committed offset of each source topic's
// partition of the task, where processing resumes (-1: none yet, so from
// the start). The input between the
// checkpoint's and there is read too (StatefulTask.SeeInput), for the
// stream time that input set.
func (w *Worker) restore(ctx context.Context, id topology.TaskID, st topology.StatefulTask, committed map[string]int64) error {
	from := st.RestoreFrom()
	if len(from) == 0 {
		return nil
	}
	if w.txnOpen.Load() {
		// A restore can outlast the transaction timeout (DESIGN.md
		// invariant 5): tasks are prepared before Begin.
		return &FatalError{Cause: "internal error", Err: fmt.Errorf("task %d_%d restored while a transaction is open", id.Subtopology, id.Partition)}
	}
	w.health.restoring.Add(1)
	w.m.restoring.Inc()
	defer func() {
		w.health.restoring.Add(-1)
		w.m.restoring.Dec()
		if w.health.batchFrom.Load() != 0 {
			// A restore inside a batch (not under exactly_once) does not
			// count towards the batch's time for Health.
			w.batchBegins()
		}
	}()
	start := time.Now()
	cl, err := kgo.NewClient(append(w.baseOpts(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers are kept so that the read position is known exactly:
		// the last record before the end may be a commit or abort marker.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return &FatalError{Cause: "invalid client configuration", Err: err}
	}
	defer cl.Close()
	task := fmt.Sprintf("%d_%d", id.Subtopology, id.Partition)
	for topic, c := range committed {
		if off, ok := from[topic]; ok && c >= 0 && off > c {
			// Only state written by an older sluice, which restored
			// source tables to the topic's end, can be ahead.
			w.log.Warn("a source table's state is ahead of the group's committed offset: records consumed again take it back to older values until it catches up; delete the task's state directory to restore it exactly",
				"task", task, "topic", topic, "partition", id.Partition, "checkpoint", off, "committed", c)
		}
	}
	spans, next, err := restoreSpans(ctx, kadm.NewClient(cl), id.Partition, from, st.InputFrom(), committed)
	if err != nil {
		return fmt.Errorf("txn: restore task %s: %w", task, err)
	}
	var n, seen int64
	read := len(spans) > 0
	if read {
		select {
		case w.replaying <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-w.replaying }()
		assign := map[string]map[int32]kgo.Offset{}
		var ahead int64 // offsets to read, records and markers
		for topic, s := range spans {
			assign[topic] = map[int32]kgo.Offset{id.Partition: kgo.NewOffset().At(s.from())}
			ahead += s.end() - s.from()
		}
		cl.AddConsumePartitions(assign)
		w.log.Info("task restoring", "task", task, "offsets", ahead)
		// Progress, for the metrics: the offset each topic's read
		// began at, and the offsets read of all topics so far.
		begin := map[string]int64{}
		for topic, s := range spans {
			begin[topic] = s.from()
		}
		var readSoFar, counted int64
		w.m.restoreOffsets.WithLabelValues(task).Set(float64(ahead))
		readGauge := w.m.restoreRead.WithLabelValues(task)
		defer func() {
			w.m.restoreOffsets.DeleteLabelValues(task)
			w.m.restoreRead.DeleteLabelValues(task)
		}()
		progress := time.Now()
		for len(spans) > 0 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, fe := range fs.Errors() {
				w.log.Warn("restore fetch error; retrying", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
			var rerr error
			fs.EachRecord(func(r *kgo.Record) {
				s, ok := spans[r.Topic]
				if rerr != nil || !ok {
					return
				}
				if !r.Attrs.IsControl() {
					if s.restore >= 0 && r.Offset >= s.restore && r.Offset < s.restoreEnd {
						w.checkRecord(r, task)
						rerr = st.Restore(r)
						n++
					}
					if r.Offset >= s.see && r.Offset < s.seeEnd {
						st.SeeInput(r)
						seen++
					}
				}
				if r.Offset+1 >= s.end() {
					delete(spans, r.Topic)
				}
			})
			if rerr != nil {
				return &FatalError{Cause: "restoring task " + task + " failed", Err: rerr}
			}
			// A poll's records of a partition are in offset order: the
			// last one tells how far the topic's read has come.
			fs.EachPartition(func(p kgo.FetchTopicPartition) {
				if len(p.Records) > 0 {
					last := p.Records[len(p.Records)-1].Offset + 1
					readSoFar += max(last-begin[p.Topic], 0)
					begin[p.Topic] = max(begin[p.Topic], last)
				}
			})
			readGauge.Set(float64(readSoFar))
			w.m.restored.Add(float64(n - counted))
			counted = n
			if time.Since(progress) >= restoreProgressEvery {
				progress = time.Now()
				w.log.Info("task restoring", "task", task, "records", n, "input_records_seen", seen, "offsets", ahead, "for", time.Since(start).Round(time.Second))
			}
		}
	}
	if err := st.RestoreDone(next); err != nil {
		return &FatalError{Cause: "restoring task " + task + " failed", Err: err}
	}
	if read {
		w.m.restoreSeconds.Observe(time.Since(start).Seconds())
		w.log.Info("task restored", "task", task, "records", n, "input_records_seen", seen, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// restoreProgressEvery is how often a long restore logs its progress.
const restoreProgressEvery = 10 * time.Second

// restoreSpan is what a restore reads of one topic's partition: changelog
// records to restore, [restore, restoreEnd) (restore -1: none), and input
// records to show SeeInput, [see, seeEnd). A FromTable topic is both.
type restoreSpan struct {
	restore, restoreEnd int64
	see, seeEnd         int64
}

func (s restoreSpan) from() int64 {
	if s.restore < 0 {
		return s.see
	}
	if s.see < s.seeEnd {
		return min(s.restore, s.see)
	}
	return s.restore
}

func (s restoreSpan) end() int64 { return max(s.restoreEnd, s.seeEnd) }

// restoreSpans returns the spans a restore reads: each changelog from its
// checkpoint (from; -2: the start) to its read_committed end — a source
// topic read as a table's changelog only up to the group's committed
// offset (committed; -1: none, the start) —, and each source topic from
// the input the checkpoint covers (inputFrom) to the group's committed
// offset. Spans with nothing to read are left out, and
// so are records deleted since. next holds every changelog's end.
func restoreSpans(ctx context.Context, adm *kadm.Client, partition int32, from, inputFrom, committed map[string]int64) (map[string]restoreSpan, map[string]int64, error) {
	topics := make([]string, 0, len(from)+len(inputFrom))
	for t := range from {
		topics = append(topics, t)
	}
	for t := range inputFrom {
		if _, ok := from[t]; !ok {
			topics = append(topics, t)
		}
	}
	// ListCommittedOffsets is the last stable offset: the read_committed end.
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list ends: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("list starts: %w", err)
	}
	spans := map[string]restoreSpan{}
	next := map[string]int64{}
	for _, topic := range topics {
		first := int64(0)
		if s, ok := starts.Lookup(topic, partition); ok && s.Err == nil {
			first = s.Offset
		}
		s := restoreSpan{restore: -1}
		if off, ok := from[topic]; ok {
			end, ok := ends.Lookup(topic, partition)
			if !ok || end.Err != nil {
				return nil, nil, fmt.Errorf("end of changelog %s: %v", topic, end.Err)
			}
			to := end.Offset
			if c, ok := committed[topic]; ok {
				// A source topic that is also a table's changelog (a
				// source table): restored up to where processing
				// resumes, as the task consumes the rest again. A table
				// restored past it would go back to older values as the
				// task read them again, and records joined meanwhile
				// would see them (Kafka Streams restores source tables
				// to the committed offset too).
				to = min(to, max(c, first))
			}
			next[topic] = to
			if off = max(off, first); off < to {
				s.restore, s.restoreEnd = off, to
			}
		}
		if off, ok := inputFrom[topic]; ok {
			if to, ok := committed[topic]; ok {
				if off = max(off, first); off < to {
					s.see, s.seeEnd = off, to
				}
			}
		}
		if s.restore >= 0 || s.see < s.seeEnd {
			spans[topic] = s
		}
	}
	return spans, next, nil
}
