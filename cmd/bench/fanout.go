package main

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The fanout variant writes what the count topology writes, minus the
// state: for every input record, two 8-byte records to two topics (the
// count writes its output and its changelog record). It is not a target;
// it tells how much of the count's cost is the state layer and how much
// is producing twice as many records as the raw loop.
//
//	sluice_eos_fanout  stream.From(in).MapValues(sequence number)
//	                   .To(out) and .To(<out>2), exactly_once

// fanoutSecond names the fanout's second output topic.
func fanoutSecond(t topics) string { return t.out + "2" }

// fanoutLoop returns the variant's loop; partitions is -partitions.
func fanoutLoop(partitions int) func(ctx context.Context, e env, t topics, p *probe) error {
	return func(ctx context.Context, e env, t topics, p *probe) error {
		if err := broker.CreateTopics(ctx, e.brokers, int32(partitions), fanoutSecond(t)); err != nil {
			return err
		}
		return runFanout(ctx, e, t, p)
	}
}

func runFanout(ctx context.Context, e env, t topics, p *probe) error {
	b := stream.NewBuilder(t.app)
	seqs := stream.From(b, t.in, serde.String, serde.Bytes, stream.Named("read-"+t.in)).
		MapValues(func(v []byte) int64 {
			seq, err := txntest.ParseSeq(v)
			if err != nil {
				return -1 // checkFanout reports it
			}
			return seq
		})
	seqs.To(t.out, serde.String, serde.Int64, stream.Named("write-"+t.out))
	seqs.To(fanoutSecond(t), serde.String, serde.Int64, stream.Named("write-"+fanoutSecond(t)))
	topo, err := b.Build()
	if err != nil {
		return err
	}
	return runWorker(ctx, e, p, topo, txn.ExactlyOnce, 0)
}

// checkFanout verifies that both outputs hold every sequence number in
// [0, n) exactly once, read with read_committed.
func checkFanout(ctx context.Context, e env, t topics, n int64) error {
	for _, topic := range []string{t.out, fanoutSecond(t)} {
		seen := make([]uint8, n)
		var records, distinct, dups, foreign int64
		err := txntest.ReadCommitted(ctx, e.brokers, topic, func(r *kgo.Record) {
			records++
			seq, err := serde.Int64.Decode(r.Value)
			switch {
			case err != nil || seq < 0 || seq >= n:
				foreign++
			case seen[seq] > 0:
				dups++
			default:
				distinct++
				seen[seq]++
			}
		}, func() bool { return distinct >= n })
		if err != nil {
			return err
		}
		if distinct != n || dups > 0 || foreign > 0 {
			return fmt.Errorf("%s: %d records: %d of %d sequence numbers, %d duplicates, %d foreign", topic, records, distinct, n, dups, foreign)
		}
	}
	return nil
}
