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
// partition of the task, where processing resumes. The input between the
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
		for topic, s := range spans {
			assign[topic] = map[int32]kgo.Offset{id.Partition: kgo.NewOffset().At(s.from())}
		}
		cl.AddConsumePartitions(assign)
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
		}
	}
	if err := st.RestoreDone(next); err != nil {
		return &FatalError{Cause: "restoring task " + task + " failed", Err: err}
	}
	w.m.restored.Add(float64(n))
	if read {
		w.log.Info("task restored", "task", task, "records", n, "input_records_seen", seen, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

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
// checkpoint (from; -2: the start) to its read_committed end, and each
// source topic from the input the checkpoint covers (inputFrom) to the
// group's committed offset. Spans with nothing to read are left out, and
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
			next[topic] = end.Offset
			if off = max(off, first); off < end.Offset {
				s.restore, s.restoreEnd = off, end.Offset
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
