package txn

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runPlain runs the at_least_once and at_most_once guarantees: the same
// operators without transactions, recovering like runExactlyOnce.
func (w *Worker) runPlain(ctx context.Context) error {
	return w.runSessions(ctx, "re-creating the consumer", w.plainSession)
}

// plainSession runs one group consumer. Rebalances are blocked from a poll
// until its batch's offsets are committed, so a commit never covers a
// partition this worker no longer owns.
//
//   - at_least_once: process, produce, flush; commit the offsets only when
//     every output was acknowledged. A failure re-creates the consumer,
//     which resumes from the last commit: outputs may repeat, none is lost.
//   - at_most_once: commit the polled offsets first, then process and
//     produce. A crash or failed produce loses those outputs; none repeats.
func (w *Worker) plainSession(ctx context.Context) (progressed bool, err error) {
	opts := append(w.groupOpts(), kgo.BlockRebalanceOnPoll())
	cl, err := kgo.NewClient(append(opts, w.cfg.ClientOpts...)...)
	if err != nil {
		return false, &FatalError{Cause: "invalid client configuration", Err: err}
	}
	w.m.sessions.Inc()
	// Close would wait forever for a rebalance this loop still blocks on
	// some return paths; allow it first.
	defer cl.CloseAllowingRebalance()
	ts := w.newTasks()
	defer ts.drop()

	for {
		fetches := cl.PollRecords(ctx, w.pollRecords(0, w.cfg.CommitInterval))
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return progressed, nil
		}
		if err := w.fetchErr(fetches); err != nil {
			return progressed, err
		}
		if fetches.NumRecords() == 0 {
			cl.AllowRebalance()
			continue
		}
		if err := w.prepareTasks(ctx, ts, cl.CommittedOffsets, fetches); err != nil {
			return progressed, err
		}
		b := w.newBatch()
		// A stop request lets the batch finish, as under exactly_once:
		// offsets committed before processing (at_most_once) get their
		// outputs, and at_least_once commits what it produced, so a
		// graceful stop loses nothing and repeats nothing.
		pctx := context.WithoutCancel(ctx)
		ls := newLanes(ts, w.cfg.Lanes, func(r *kgo.Record) { cl.Produce(pctx, r, b.promise) })
		var polled []*kgo.Record
		procErr := w.collect(ctx, fetches, b, cl.PollRecords, func(f kgo.Fetches) error {
			if w.cfg.Guarantee == AtMostOnce {
				if err := cl.CommitRecords(pctx, f.Records()...); err != nil {
					return fmt.Errorf("txn: commit offsets before processing: %w", err)
				}
			} else {
				polled = append(polled, f.Records()...)
			}
			// Without a transaction, a task may be restored mid-batch.
			if err := w.prepareTasks(ctx, ts, cl.CommittedOffsets, f); err != nil {
				return err
			}
			return ls.process(f)
		})
		b.produced = ls.close() // every output is handed to franz-go before the flush
		fctx, cancel := context.WithTimeout(pctx, w.cfg.SessionTimeout)
		err := w.finishPlain(fctx, cl, ts, b, polled, procErr)
		cancel()
		if err != nil {
			return progressed, err
		}
		progressed = true
		w.after(ts, batchCommitted)
		cl.AllowRebalance()
	}
}

// finishPlain ends a plain batch within ctx: it waits for the batch's
// outputs, then, under at_least_once and when all were acknowledged,
// commits the polled offsets, and applies the tasks' state. procErr, a
// failure while processing, is returned after the outputs produced so far
// are flushed: under at_most_once their offsets are already committed.
func (w *Worker) finishPlain(ctx context.Context, cl *kgo.Client, ts *tasks, b *batch, polled []*kgo.Record, procErr error) error {
	flushErr := cl.Flush(ctx)
	w.m.produced.Add(float64(b.produced))
	if procErr != nil {
		return procErr
	}
	if flushErr != nil {
		return fmt.Errorf("txn: waiting for the batch's outputs: %w", flushErr)
	}
	if err := b.err(); err != nil {
		if w.cfg.Guarantee == AtLeastOnce {
			return fmt.Errorf("txn: produce failed; resuming from the last committed offsets: %w", err)
		}
		w.log.Error("produce failed; at_most_once drops the batch's failed outputs", "err", err)
	}
	if w.cfg.Guarantee == AtLeastOnce {
		if err := cl.CommitRecords(ctx, polled...); err != nil {
			return fmt.Errorf("txn: commit offsets: %w", err)
		}
	}
	w.m.txnCommitted.Inc()
	return nil
}
