package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restoreCapture is a slog handler that picks the workers' "task
// restored", "transaction committed" and other messages out of their logs
// (txn logs each restore with its records and duration), and passes what
// the bench's own level allows on to the bench's handler.
type restoreCapture struct {
	inner slog.Handler
	attrs []slog.Attr
	on    func(at time.Time, msg string, attrs map[string]slog.Value)
	level slog.Level // the lowest level on is called for
}

func (h *restoreCapture) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level || h.inner.Enabled(ctx, l)
}

func (h *restoreCapture) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= h.level {
		attrs := map[string]slog.Value{}
		for _, a := range h.attrs {
			attrs[a.Key] = a.Value
		}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value
			return true
		})
		h.on(r.Time, r.Message, attrs)
	}
	if h.inner.Enabled(ctx, r.Level) {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func (h *restoreCapture) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	c.attrs = append(slices.Clip(h.attrs), as...)
	return &c
}

func (h *restoreCapture) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

// restoredTask is one "task restored" log line.
type restoredTask struct {
	at      time.Time
	task    string
	records int64
	took    time.Duration
}

// restoreBench is the changelog the restore benchmark replays, written
// once per invocation, and the app whose store it is.
type restoreBench struct {
	app, in, out, changelog string
	partitions              int
	filled                  int64 // records the filler wrote
	runs                    int   // restores so far: each adds one record per partition
}

// restoreResult is one run of the restore benchmark.
type restoreResult struct {
	rawRecords int64         // data records the raw consumer read
	rawElapsed time.Duration // its client's creation to its last record
	rawRate    float64

	records int64         // records the worker restored
	took    time.Duration // the sum of the tasks' restore durations
	span    time.Duration // first task's restore start to the last task restored (tasks restore in parallel)
	wall    time.Duration // worker start to the last task restored (group join included)
	tasks   int
	rate    float64 // records / span

	others float64 // CPUs other processes kept busy meanwhile
}

// setupRestore creates the restore benchmark's topics and writes its
// changelog: records distinct keys, spread over the partitions, one value
// each, in transactions of 50,000 records as a stateful worker writes it
// (a commit marker per partition and transaction).
func setupRestore(ctx context.Context, o options, e env, prefix string, progress io.Writer) (*restoreBench, error) {
	rb := &restoreBench{app: prefix + "-restore", partitions: o.partitions}
	rb.in, rb.out, rb.changelog = rb.app+"-in", rb.app+"-out", changelogOf(rb.app)
	fmt.Fprintf(progress, "restore: writing %d changelog records to %s...\n", o.restoreRecords, rb.changelog)
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), rb.in, rb.out); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...),
		kgo.TransactionalID(rb.app+"-filler"),
		kgo.TransactionTimeout(sessionTimeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(batchMaxBytes),
		kgo.MaxBufferedRecords(100_000),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	compact := "compact"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(o.partitions), -1, map[string]*string{"cleanup.policy": &compact}, rb.changelog)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", rb.changelog, err)
	}
	one, _ := serde.Int64.Encode(1)
	const perTxn = 50_000
	for from := int64(0); from < o.restoreRecords; from += perTxn {
		if err := cl.BeginTransaction(); err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var perr error
		for i := from; i < min(from+perTxn, o.restoreRecords); i++ {
			r := &kgo.Record{Topic: rb.changelog, Partition: int32(i % int64(o.partitions)), Key: []byte("k" + strconv.FormatInt(i, 10)), Value: one}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					perr = firstErr(perr, err)
					mu.Unlock()
				}
			})
		}
		ferr := cl.Flush(ctx)
		mu.Lock()
		err := errors.Join(ferr, perr)
		mu.Unlock()
		if eerr := cl.EndTransaction(ctx, kgo.TransactionEndTry(err == nil)); err == nil {
			err = eerr
		}
		if err != nil {
			return nil, fmt.Errorf("writing the changelog: %w", err)
		}
	}
	rb.filled = o.restoreRecords
	return rb, nil
}

// firstErr returns the first non-nil error.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// measure runs the raw consume and the worker's restore once each, in an
// order that alternates from run to run.
func (rb *restoreBench) measure(ctx context.Context, o options, e env, adm *kadm.Client, runNo int, progress io.Writer) (restoreResult, error) {
	var res restoreResult
	runtime.GC()
	if o.quiet > 0 {
		if load := waitQuiet(quietCPUs, o.quiet); load >= quietCPUs {
			fmt.Fprintf(progress, "run %d: restore: other processes still keep %.1f CPUs busy after %v; measuring anyway\n", runNo, load, o.quiet)
		}
	}
	before := sampleCPU()
	start := time.Now()
	type step struct {
		name string
		run  func() error
	}
	steps := []step{
		{"restore-raw", func() error { return rb.rawConsume(ctx, e, adm, &res) }},
		{"restore", func() error { return rb.restore(ctx, o, e, &res) }},
	}
	if runNo%2 == 0 {
		slices.Reverse(steps)
	}
	for _, st := range steps {
		runtime.GC()
		if o.cpuprofile != "" {
			f, err := os.Create(filepath.Join(o.cpuprofile, fmt.Sprintf("%s-r%d.pprof", st.name, runNo)))
			if err != nil {
				return res, err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return res, err
			}
			err = st.run()
			pprof.StopCPUProfile()
			f.Close()
			if err != nil {
				return res, err
			}
			continue
		}
		if err := st.run(); err != nil {
			return res, err
		}
	}
	res.others = othersCPU(before, sampleCPU(), time.Since(start))
	return res, nil
}

// rawConsume reads every partition of the changelog from the start to its
// read_committed end with one plain client, as the restore does: with
// read_committed, keeping control records so that the end is known by
// offset.
func (rb *restoreBench) rawConsume(ctx context.Context, e env, adm *kadm.Client, res *restoreResult) error {
	ends, err := adm.ListCommittedOffsets(ctx, rb.changelog)
	if err != nil {
		return fmt.Errorf("restore: listing the changelog's ends: %w", err)
	}
	need := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	ends.Each(func(l kadm.ListedOffset) {
		if l.Offset > 0 {
			need[l.Partition] = l.Offset
			assign[l.Partition] = kgo.NewOffset().AtStart()
		}
	})
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{rb.changelog: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var n int64
	for len(need) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				n++
			}
			if end, ok := need[r.Partition]; ok && r.Offset+1 >= end {
				delete(need, r.Partition)
			}
		})
	}
	res.rawElapsed = time.Since(start)
	res.rawRecords = n
	res.rawRate = float64(n) / res.rawElapsed.Seconds()
	return nil
}

// restore starts a worker of the app on an empty state directory and a
// record in each input partition, so that it creates every task and
// restores each from offset 0, and stops it once every task is restored.
func (rb *restoreBench) restore(ctx context.Context, o options, e env, res *restoreResult) error {
	dir, err := os.MkdirTemp("", "sluice-bench-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rb.runs++
	if err := producePerPartition(ctx, e.brokers, rb.in, rb.partitions, "r"+strconv.Itoa(rb.runs)); err != nil {
		return err
	}
	var mu sync.Mutex
	var restored []restoredTask
	all := make(chan struct{})
	h := &restoreCapture{inner: e.log.Handler(), level: slog.LevelInfo, on: func(at time.Time, msg string, a map[string]slog.Value) {
		if msg != "task restored" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		restored = append(restored, restoredTask{at: at, task: a["task"].String(), records: a["records"].Int64(), took: a["took"].Duration()})
		if len(restored) == rb.partitions {
			close(all)
		}
	}}
	w, err := newCountWorker(e.brokers, topics{app: rb.app, in: rb.in, out: rb.out}, "0", dir, slog.New(h))
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- w.Run(wctx) }()
	t := time.NewTimer(o.timeout)
	defer t.Stop()
	select {
	case <-all:
	case err := <-errc:
		return fmt.Errorf("restore: the worker stopped before restoring every task: %v", err)
	case <-t.C:
		return fmt.Errorf("restore: %d of %d tasks restored after %v", len(restored), rb.partitions, o.timeout)
	}
	cancel()
	if err := <-errc; err != nil {
		return fmt.Errorf("restore: worker: %w", err)
	}
	first := restored[0].at.Add(-restored[0].took)
	for _, r := range restored {
		res.records += r.records
		res.took += r.took
		if s := r.at.Add(-r.took); s.Before(first) {
			first = s
		}
	}
	res.tasks = len(restored)
	res.span = restored[len(restored)-1].at.Sub(first)
	res.wall = restored[len(restored)-1].at.Sub(start)
	res.rate = float64(res.records) / res.span.Seconds()
	return nil
}

// producePerPartition writes one record to each partition of topic.
func producePerPartition(ctx context.Context, brokers []string, topic string, partitions int, keyPrefix string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	var rs []*kgo.Record
	for p := range partitions {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(p), Key: fmt.Appendf(nil, "%s-p%d", keyPrefix, p), Value: []byte("x")})
	}
	return cl.ProduceSync(ctx, rs...).FirstErr()
}

// reportRestore prints the restore figures: medians over the runs.
func reportRestore(w io.Writer, o options, rs []restoreResult) {
	if len(rs) == 0 {
		return
	}
	rate := median(rs, func(r restoreResult) float64 { return r.rate })
	raw := median(rs, func(r restoreResult) float64 { return r.rawRate })
	fmt.Fprintln(w)
	fmt.Fprintf(w, "restore: a worker on an empty state directory replays a changelog of %d records (%d partitions, %d tasks), %d runs\n",
		rs[0].records, o.partitions, rs[0].tasks, len(rs))
	fmt.Fprintf(w, "  %-34s %10.0f rec/s   (records / first task's restore start to last task's end; per run:%s)\n", "sluice restore", rate, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.0f", r.rate) }))
	fmt.Fprintf(w, "  %-34s %10.0f rec/s   (one client, all partitions; per run:%s)\n", "raw read_committed consume", raw, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.0f", r.rawRate) }))
	fmt.Fprintf(w, "  tasks' restore times summed %v (median), first task's start to last task's end %v, worker start to last task restored %v; others %.2f CPUs\n",
		time.Duration(median(rs, func(r restoreResult) float64 { return float64(r.took) })).Round(time.Millisecond),
		time.Duration(median(rs, func(r restoreResult) float64 { return float64(r.span) })).Round(time.Millisecond),
		time.Duration(median(rs, func(r restoreResult) float64 { return float64(r.wall) })).Round(time.Millisecond),
		median(rs, func(r restoreResult) float64 { return r.others }))
	verdict := "ok"
	if rate < 500_000 {
		verdict = "BELOW TARGET"
	}
	fmt.Fprintf(w, "%-36s = %.0f rec/s (target >= 500000) %s\n", "restore rate", rate, verdict)
	fmt.Fprintf(w, "%-36s = %.2f   per run:%s\n", "restore/raw_read_committed", rate/raw, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.2f", r.rate/r.rawRate) }))
}
