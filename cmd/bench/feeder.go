package main

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// feeder produces sequence-numbered records with keys "k<seq mod keys>"
// (as txntest.Produce does) at a steady rate until stopped.
type feeder struct {
	cancel context.CancelFunc
	done   chan struct{}
	next   int64 // the sequence number after the last produced
	seq    atomic.Int64
	err    error
}

func startFeeder(ctx context.Context, brokers []string, topic string, from, keys int64, size, rate int) (*feeder, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &feeder{cancel: cancel, done: make(chan struct{}), next: from}
	const tick = 50 * time.Millisecond
	per := int64(rate) * int64(tick) / int64(time.Second)
	go func() {
		defer close(f.done)
		defer cl.Close()
		var mu sync.Mutex
		t := time.NewTicker(tick)
		defer t.Stop()
		for ctx.Err() == nil {
			for range per {
				seq := f.next
				f.next++
				f.seq.Store(f.next)
				r := &kgo.Record{Key: []byte("k" + strconv.FormatInt(seq%keys, 10)), Value: txntest.SeqValue(seq, size)}
				cl.Produce(context.WithoutCancel(ctx), r, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						f.err = firstErr(f.err, err)
						mu.Unlock()
					}
				})
			}
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Flush(fctx); err != nil {
			mu.Lock()
			f.err = firstErr(f.err, err)
			mu.Unlock()
		}
	}()
	return f, nil
}

// produced returns the sequence number after the last record handed to
// the producer so far.
func (f *feeder) produced() int64 { return f.seq.Load() }

// stop stops feeding and returns the sequence number after the last
// record produced: every number before it was acknowledged.
func (f *feeder) stop() (int64, error) {
	f.cancel()
	<-f.done
	return f.next, f.err
}
