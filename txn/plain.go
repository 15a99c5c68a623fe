package txn

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/batch"
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
	w.health.client.Store(cl)
	defer w.health.client.Store(nil)
	// Close would wait forever for a rebalance this loop still blocks on
	// some return paths; allow it first.
	defer cl.CloseAllowingRebalance()
	c := w.newCore()
	defer w.closeCore(c)

	for {
		pollCtx, cancelPoll := w.pollContext(ctx, c)
		fetches := cl.PollRecords(pollCtx, w.pollRecords(0, w.cfg.CommitInterval))
		cancelPoll()
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return progressed, nil
		}
		if err := w.fetchErr(fetches); err != nil {
			return progressed, err
		}
		if err := w.betweenBatches(ctx, c); err != nil {
			return progressed, err
		}
		if fetches.NumRecords() == 0 {
			w.measureStores(c) // the poll may have ended for it
			if !w.punctuationDue(c) {
				cl.AllowRebalance()
				continue
			}
			// A batch for the wall-clock punctuators alone.
		} else if err := w.prepareTasks(ctx, c, cl.CommittedOffsets, fetches); err != nil {
			return progressed, err
		}
		var p promises
		// A stop request lets the batch finish, as under exactly_once:
		// offsets committed before processing (at_most_once) get their
		// outputs, and at_least_once commits what it produced, so a
		// graceful stop loses nothing and repeats nothing.
		pctx := context.WithoutCancel(ctx)
		w.batchBegins()
		c.Begin(func(r *kgo.Record) { cl.Produce(pctx, r, p.promise) })
		var polled []*kgo.Record
		var records int
		var procErr error
		if fetches.NumRecords() > 0 {
			records, procErr = w.collect(ctx, fetches, cl.PollRecords, func(f kgo.Fetches) error {
				if w.cfg.Guarantee == AtMostOnce {
					if err := cl.CommitRecords(pctx, f.Records()...); err != nil {
						return fmt.Errorf("txn: commit offsets before processing: %w", err)
					}
				} else {
					polled = append(polled, f.Records()...)
				}
				// Without a transaction, a task may be restored mid-batch.
				if err := w.prepareTasks(ctx, c, cl.CommittedOffsets, f); err != nil {
					return err
				}
				w.checkPartitioning(f)
				return processErr(c.Process(f))
			})
		}
		if procErr == nil {
			procErr = w.punctuate(c)
		}
		counts, ferr := c.Finish() // every output is handed to franz-go before the flush
		if procErr == nil {
			procErr = ferr
		}
		fctx, cancel := context.WithTimeout(pctx, w.cfg.SessionTimeout)
		o, err := w.finishPlain(fctx, cl, &p, polled, procErr)
		cancel()
		w.count(counts, o == batch.Committed)
		w.batchEnds(o == batch.Committed, records)
		if w.advance(c, o).Recreate {
			return progressed, err
		}
		progressed = true
		cl.AllowRebalance()
	}
}

// finishPlain ends a plain batch within ctx: it waits for the batch's
// outputs, then, under at_least_once and when all were acknowledged,
// commits the polled offsets. It returns the outcome, and why for every
// outcome after which the consumer goes: the core drops the tasks then,
// and the next consumer resumes from the group's offsets. procErr, a
// failure while processing, is returned after the outputs produced so
// far are flushed: under at_most_once their offsets are already
// committed.
func (w *Worker) finishPlain(ctx context.Context, cl *kgo.Client, p *promises, polled []*kgo.Record, procErr error) (batch.Outcome, error) {
	flushErr := cl.Flush(ctx)
	switch {
	case procErr != nil:
		return batch.Unknown, procErr
	case flushErr != nil:
		return batch.Unknown, fmt.Errorf("txn: waiting for the batch's outputs: %w", flushErr)
	}
	if err := p.first(); err != nil {
		if w.cfg.Guarantee == AtLeastOnce {
			return batch.ProduceFailed, fmt.Errorf("txn: produce failed; resuming from the last committed offsets: %w", err)
		}
		w.log.Error("produce failed; at_most_once drops the batch's failed outputs", "err", err)
	}
	if w.cfg.Guarantee == AtLeastOnce && len(polled) > 0 {
		if err := cl.CommitRecords(ctx, polled...); err != nil {
			return batch.Unknown, fmt.Errorf("txn: commit offsets: %w", err)
		}
	}
	w.m.txnCommitted.Inc()
	return batch.Committed, nil
}
