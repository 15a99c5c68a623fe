package txn

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/txn/batch"
)

// Wall-clock punctuation (topology.Punctuator): the loops poll for no
// longer than until the earliest wall-clock punctuator of an open task is
// due, by Config.Clock; a batch runs the due punctuators after its polls'
// records, and a batch is made for them alone when no record arrived (under
// exactly_once, a transaction of its own). A stream-time punctuator needs
// nothing here: it fires inside its task's Process.

// pollContext returns the context to poll with: ctx, with a deadline at the
// next wall-clock punctuation when an open task has one, so that a quiet
// input does not hold it back (nor the next measure of the stores, after
// a commit: measureStores), and cancelled when a rebalance revokes
// partitions (onRevoked), so that an idle worker closes their tasks at
// once, or when a query waits for the loop (askLoop). cancel must be
// called.
func (w *Worker) pollContext(ctx context.Context, c *batch.Core) (context.Context, context.CancelFunc) {
	stop := func() {}
	if due, ok := c.NextPunctuation(); ok {
		ctx, stop = context.WithTimeout(ctx, due.Sub(w.cfg.Clock()))
	}
	if w.sizes.dirty {
		// The store metrics are measured when due, idle or not.
		var stopSizes context.CancelFunc
		ctx, stopSizes = context.WithDeadline(ctx, w.sizes.next)
		stopPunct := stop
		stop = func() { stopSizes(); stopPunct() }
	}
	pctx, wake := context.WithCancel(ctx)
	w.mu.Lock()
	w.wake = wake
	if len(w.queries) > 0 {
		wake() // queued while the last batch ran: answered after this poll
	}
	w.mu.Unlock()
	return pctx, func() {
		w.mu.Lock()
		w.wake = nil
		w.mu.Unlock()
		wake()
		stop()
	}
}

// punctuationDue reports whether a wall-clock punctuator of an open task
// is due.
func (w *Worker) punctuationDue(c *batch.Core) bool {
	due, ok := c.NextPunctuation()
	return ok && !w.cfg.Clock().Before(due)
}

// punctuate runs, in the open batch, the wall-clock punctuators that are
// due. A punctuator's failure under the fail error policy stops the worker.
func (w *Worker) punctuate(c *batch.Core) error {
	if !w.punctuationDue(c) {
		return nil
	}
	err := c.Punctuate(w.cfg.Clock())
	if pe, ok := errors.AsType[*batch.PunctuationError](err); ok {
		return &FatalError{Cause: "a punctuator failed and the topology's error policy is to fail", Err: pe}
	}
	return err
}
