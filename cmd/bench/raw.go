package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// rawLoop is the baseline: a franz-go GroupTransactSession consume→produce
// loop as a careful user writes it (franz-go's own EOS example, minus its
// known pitfalls): one poll = one transaction; every record copied to the
// output with an async produce; Flush before End, so End does not sit out
// the producer's linger; End commits unless a produce failed; End's
// (false, nil) after a rebalance means "reprocess", not "die".
type rawLoop struct {
	brokers  []string
	group    string
	in, out  string
	maxBatch int // records per transaction; 0: whatever one poll returns
	batchMax int32
	log      *slog.Logger
	hooks    kgo.Hook
}

func (l rawLoop) run(ctx context.Context) error {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(l.brokers...),
		kgo.ConsumerGroup(l.group),
		kgo.ConsumeTopics(l.in),
		kgo.TransactionalID(l.group+"-0"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Where they bear on throughput, the options sluice uses.
		kgo.ProducerBatchMaxBytes(l.batchMax),
		kgo.ProducerLinger(0),
		kgo.SessionTimeout(sessionTimeout),
		kgo.TransactionTimeout(sessionTimeout),
		kgo.WithHooks(l.hooks),
	)
	if err != nil {
		return err
	}
	defer sess.Close()
	for {
		var fs kgo.Fetches
		if l.maxBatch > 0 {
			fs = sess.PollRecords(ctx, l.maxBatch)
		} else {
			fs = sess.PollFetches(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, kgo.ErrClientClosed) {
				return fe.Err
			}
			l.log.Warn("raw loop: fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("raw loop: begin: %w", err)
		}
		e := kgo.AbortingFirstErrPromise(sess.Client())
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, &kgo.Record{
				Topic:     l.out,
				Key:       r.Key,
				Value:     r.Value,
				Headers:   r.Headers,
				Timestamp: r.Timestamp,
			}, e.Promise())
		})
		if err := sess.Client().Flush(ctx); err != nil {
			return nil // ctx done
		}
		committed, err := sess.End(ctx, kgo.TransactionEndTry(e.Err() == nil))
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("raw loop: end: %w", err)
		case !committed:
			l.log.Warn("raw loop: transaction aborted; reprocessing", "produce_err", e.Err())
		}
	}
}
