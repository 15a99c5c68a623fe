package txn

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restore replays a stateful task's changelogs from its checkpoint to their
// current read_committed end, so that the task starts from exactly the
// state its committed input produced. Transactions that aborted are never
// seen; transactions that committed after the checkpoint (a crash between
// the Kafka commit and the local apply, or an unknown outcome) are.
func (w *Worker) restore(ctx context.Context, id TaskID, st StatefulTask) error {
	from := st.RestoreFrom()
	if len(from) == 0 {
		return nil
	}
	start := time.Now()
	topics := make([]string, 0, len(from))
	for t := range from {
		topics = append(topics, t)
	}
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
	// ListCommittedOffsets is the last stable offset: the read_committed end.
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("txn: restore task %d_%d: list changelog ends: %w", id.Subtopology, id.Partition, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("txn: restore task %d_%d: list changelog starts: %w", id.Subtopology, id.Partition, err)
	}
	next := map[string]int64{}
	need := map[string]int64{}
	assign := map[string]map[int32]kgo.Offset{}
	for topic, off := range from {
		end, ok := ends.Lookup(topic, id.Partition)
		if !ok || end.Err != nil {
			return fmt.Errorf("txn: restore task %d_%d: end of changelog %s: %v", id.Subtopology, id.Partition, topic, end.Err)
		}
		next[topic] = end.Offset
		if start, ok := starts.Lookup(topic, id.Partition); ok && start.Err == nil && off < start.Offset {
			off = start.Offset // from the start (-2), or records since deleted
		}
		if off >= end.Offset {
			continue
		}
		assign[topic] = map[int32]kgo.Offset{id.Partition: kgo.NewOffset().At(max(off, 0))}
		need[topic] = end.Offset
	}
	var n int64
	if len(assign) > 0 {
		select {
		case w.replaying <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-w.replaying }()
		cl.AddConsumePartitions(assign)
		for len(need) > 0 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, fe := range fs.Errors() {
				w.log.Warn("restore fetch error; retrying", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
			var rerr error
			fs.EachRecord(func(r *kgo.Record) {
				if rerr != nil {
					return
				}
				if !r.Attrs.IsControl() {
					rerr = st.Restore(r)
					n++
				}
				if r.Offset+1 >= need[r.Topic] {
					delete(need, r.Topic)
				}
			})
			if rerr != nil {
				return &FatalError{Cause: fmt.Sprintf("restoring task %d_%d failed", id.Subtopology, id.Partition), Err: rerr}
			}
		}
	}
	if err := st.RestoreDone(next); err != nil {
		return &FatalError{Cause: fmt.Sprintf("restoring task %d_%d failed", id.Subtopology, id.Partition), Err: err}
	}
	w.m.restored.Add(float64(n))
	if n > 0 || len(assign) > 0 {
		w.log.Info("task restored", "task", fmt.Sprintf("%d_%d", id.Subtopology, id.Partition), "records", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
