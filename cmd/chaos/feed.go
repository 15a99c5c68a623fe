package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// feeder writes one app's input at a steady rate until stopped: records
// 0, 1, 2, ... of app.record, through a client that retries across broker
// restarts. It counts what the broker acknowledged and what failed; the
// check reads the input back rather than trusting either.
type feeder struct {
	a    app
	cl   *kgo.Client
	rate int // records a second

	next     int64 // the next seq to write (the feeder's goroutine only)
	failed   atomic.Int64
	firstErr atomic.Pointer[error] // the first failure, for the log
	mu       sync.Mutex
	acked    map[string]int64 // by topic
	done     chan struct{}
	stop     context.CancelFunc
}

func newFeeder(brokers []string, a app, rate int) (*feeder, error) {
	// No record delivery timeout: franz-go measures it from the record's
	// timestamp, and revenue's event time is months back.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return &feeder{a: a, cl: cl, rate: rate, done: make(chan struct{}), acked: map[string]int64{}}, nil
}

// run writes records every 10 ms until ctx ends or finish; what it
// produced is delivered under ctx.
func (f *feeder) run(ctx context.Context) {
	produceCtx := ctx
	ctx, f.stop = context.WithCancel(ctx)
	go func() {
		defer close(f.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds() * float64(f.rate))
			for ; f.next < due; f.next++ {
				if r := f.a.record(f.next); r != nil {
					f.produce(produceCtx, r)
				}
			}
		}
	}()
}

func (f *feeder) produce(ctx context.Context, r *kgo.Record) {
	f.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			f.failed.Add(1)
			f.firstErr.CompareAndSwap(nil, &err)
			return
		}
		f.mu.Lock()
		f.acked[r.Topic]++
		f.mu.Unlock()
	})
}

// finish stops the feeder, writes the app's closing records and waits
// until every record is acknowledged or has failed.
func (f *feeder) finish(ctx context.Context) error {
	f.stop()
	<-f.done
	for _, r := range f.a.finish(f.next) {
		f.produce(ctx, r)
	}
	return f.cl.Flush(ctx)
}

// feeders run one feeder per app.
type feeders []*feeder

func (fs feeders) finish(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(fs))
	for i, f := range fs {
		wg.Go(func() { errs[i] = f.finish(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (fs feeders) close() {
	for _, f := range fs {
		f.cl.Close()
	}
}

// acked returns how many records the broker acknowledged, by topic.
func (fs feeders) acked() map[string]int64 {
	m := map[string]int64{}
	for _, f := range fs {
		f.mu.Lock()
		for t, n := range f.acked {
			m[t] += n
		}
		f.mu.Unlock()
	}
	return m
}

// failed returns how many records the feeders gave up on, and the first
// failure of each feeder that had one.
func (fs feeders) failed() (int64, []string) {
	var n int64
	var why []string
	for _, f := range fs {
		n += f.failed.Load()
		if err := f.firstErr.Load(); err != nil {
			why = append(why, fmt.Sprintf("%s: %d records, first: %v", f.a.name(), f.failed.Load(), *err))
		}
	}
	return n, why
}
