package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// globalTables feeds a worker's global table state: it restores every
// partition of the tables' topics to their read_committed end before the
// worker processes anything, then keeps reading in the background.
type globalTables struct {
	g       topology.Global
	cl      *kgo.Client
	stop    context.CancelFunc
	ready   chan struct{} // closed once restored
	stopped chan struct{} // closed when the reader returns
	err     error         // why the reader stopped, valid after stopped
}

// startGlobal starts reading the global tables' topics and waits until
// they are restored. The returned tables keep current until closed or ctx
// is done; if they cannot, fail is called with the reason.
func (w *Worker) startGlobal(parent context.Context, g topology.Global, fail func(error)) (*globalTables, error) {
	ctx, stop := context.WithCancel(parent)
	started := false
	defer func() {
		if !started {
			stop()
		}
	}()
	topics := g.Topics()
	cl, err := kgo.NewClient(append(w.baseOpts(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // to know the read position exactly
	)...)
	if err != nil {
		return nil, &FatalError{Cause: "invalid client configuration", Err: err}
	}
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("txn: list global table topics: %w", err)
	}
	from := g.From()
	assign := map[string]map[int32]kgo.Offset{}
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			cl.Close()
			return nil, fmt.Errorf("txn: global table topic %q does not exist: create it before starting the app", topic)
		}
		assign[topic] = map[int32]kgo.Offset{}
		for p := range d.Partitions {
			o := kgo.NewOffset().AtStart()
			if off, ok := from[topic][p]; ok {
				o = kgo.NewOffset().At(off)
			}
			assign[topic][p] = o
		}
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("txn: end of global table topics: %w", err)
	}
	need := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		pos := int64(0)
		if off, ok := from[o.Topic][o.Partition]; ok {
			pos = off
		}
		if o.Err == nil && o.Offset > pos {
			if need[o.Topic] == nil {
				need[o.Topic] = map[int32]int64{}
			}
			need[o.Topic][o.Partition] = o.Offset
		}
	})
	cl.AddConsumePartitions(assign)
	gt := &globalTables{g: g, cl: cl, stop: stop, ready: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(gt.stopped)
		if gt.err = gt.run(ctx, w, need, time.Now()); gt.err != nil {
			w.log.Error("global tables stopped", "err", gt.err)
			fail(gt.err)
		}
	}()
	select {
	case <-gt.ready:
		started = true
		return gt, nil
	case <-gt.stopped:
		cl.Close()
		if gt.err == nil {
			gt.err = ctx.Err()
		}
		return nil, gt.err
	}
}

// run applies records until ctx is done; ready is closed when every
// partition reached its end offset of the start.
func (gt *globalTables) run(ctx context.Context, w *Worker, need map[string]map[int32]int64, start time.Time) error {
	var n int64
	restoring := true
	check := func() {
		if restoring && len(need) == 0 {
			restoring = false
			w.m.restored.Add(float64(n))
			w.log.Info("global tables restored", "records", n, "took", time.Since(start).Round(time.Millisecond))
			close(gt.ready)
		}
	}
	if err := gt.g.Flush(); err != nil {
		return &FatalError{Cause: "updating a global table failed", Err: err}
	}
	check()
	for {
		fs := gt.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var err error
		fs.EachRecord(func(r *kgo.Record) {
			if err != nil {
				return
			}
			err = gt.g.Apply(r)
			if !r.Attrs.IsControl() {
				n++
			}
			if end, ok := need[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(need[r.Topic], r.Partition)
				if len(need[r.Topic]) == 0 {
					delete(need, r.Topic)
				}
			}
		})
		if err == nil {
			err = gt.g.Flush()
		}
		if err != nil {
			return &FatalError{Cause: "updating a global table failed", Err: err}
		}
		check()
	}
}

// close stops the reader, waits for it, and closes the state.
func (gt *globalTables) close() error {
	gt.stop()
	<-gt.stopped
	gt.cl.Close()
	return gt.g.Close()
}
