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
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The state benchmarks: what a stateful topology costs next to the raw
// loop, how fast a task's state comes back from its changelog, how long a
// SIGKILLed worker takes to commit again, and how much memory a worker
// with a large store needs.
//
//	sluice_eos_count  a variant: stream.From(in).GroupByKey().Count(counts)
//	                  .ToStream().To(out), exactly_once, over input with
//	                  -count-keys distinct keys (restart.go has the others)
//	restore           a worker on an empty state directory restores a
//	                  changelog of -restore-records records, against a raw
//	                  read_committed consume of the same partitions
//	restart           restart.go
//	rss               restart.go

// countStore names the count's store: its changelog is
// <app>-counts-changelog.
const countStore = "counts"

func changelogOf(app string) string { return topology.ChangelogTopic(app, countStore) }

// countTopology counts the records of each key of in, and writes every new
// count to out.
func countTopology(app, in, out string) (*stream.Topology, error) {
	b := stream.NewBuilder(app)
	stream.From(b, in, serde.String, serde.Bytes, stream.Named("read-"+in)).
		GroupByKey(serde.String, serde.Bytes).
		Count(stream.Named(countStore)).
		ToStream().
		To(out, serde.String, serde.Int64, stream.Named("write-"+out))
	return b.Build()
}

// countLoop is the sluice_eos_count variant: the count topology, exactly
// once, one worker, its state in a fresh directory.
func countLoop(ctx context.Context, e env, t topics, p *probe) error {
	dir, err := os.MkdirTemp("", "sluice-bench-count-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := newCountWorker(e.brokers, t, "0", dir, e.log, kgo.WithHooks(p))
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// newCountWorker returns an exactly-once worker of the count topology
// reading t.in and writing t.out, with its state in dir. Every benchmark
// of the count topology (in this process or a child) starts it here.
func newCountWorker(brokers []string, t topics, instance, dir string, log *slog.Logger, opts ...kgo.Opt) (*txn.Worker, error) {
	topo, err := countTopology(t.app, t.in, t.out)
	if err != nil {
		return nil, err
	}
	return txn.NewWorker(topo, txn.Config{
		Brokers:        brokers,
		Instance:       instance,
		StateDir:       dir,
		SessionTimeout: sessionTimeout,
		Logger:         log,
		ClientOpts:     opts,
	})
}

// checkCounts verifies the output of the count topology over sequence
// numbers [0, n) with keys "k<seq mod keys>": read with read_committed,
// every key has exactly as many outputs as input records, the last of
// them its count, and nothing else is there. Under exactly_once a
// replayed record would show as a surplus output and a count off by one.
func checkCounts(ctx context.Context, brokers []string, topic string, n, keys int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	want := func(k int64) int64 {
		w := n / keys
		if k < n%keys {
			w++
		}
		return w
	}
	got := make([]int32, keys)  // outputs per key
	last := make([]int64, keys) // last count per key
	var records, foreign int64
	var decodeErr error
	consume := func(ctx context.Context) {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			records++
			k, err := strconv.ParseInt(string(r.Key[min(1, len(r.Key)):]), 10, 64)
			if len(r.Key) == 0 || r.Key[0] != 'k' || err != nil || k < 0 || k >= keys {
				foreign++
				return
			}
			v, err := serde.Int64.Decode(r.Value)
			if err != nil && decodeErr == nil {
				decodeErr = fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			got[k]++
			last[k] = v
		})
	}
	for records < n && ctx.Err() == nil {
		consume(ctx)
	}
	// Then until a second passes with nothing new: surplus outputs
	// committed after the last expected one count too.
	for ctx.Err() == nil {
		before := records
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		for pctx.Err() == nil {
			consume(pctx)
		}
		cancel()
		if records == before {
			break
		}
	}
	var wrong int64
	var first string
	for k := range keys {
		if w := want(k); int64(got[k]) != w || last[k] != w {
			if wrong == 0 {
				first = fmt.Sprintf("k%d: %d outputs, last count %d, want %d", k, got[k], last[k], want(k))
			}
			wrong++
		}
	}
	if records != n || wrong > 0 || foreign > 0 || decodeErr != nil {
		return fmt.Errorf("wrong counts in %s: %d records (want %d), %d keys wrong (first: %s), %d foreign, decode error: %v",
			topic, records, n, wrong, first, foreign, decodeErr)
	}
	return nil
}

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
	med := func(f func(restoreResult) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		slices.Sort(xs)
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	rate := med(func(r restoreResult) float64 { return r.rate })
	raw := med(func(r restoreResult) float64 { return r.rawRate })
	fmt.Fprintln(w)
	fmt.Fprintf(w, "restore: a worker on an empty state directory replays a changelog of %d records (%d partitions, %d tasks), %d runs\n",
		rs[0].records, o.partitions, rs[0].tasks, len(rs))
	fmt.Fprintf(w, "  %-34s %10.0f rec/s   (records / first task's restore start to last task's end; per run:%s)\n", "sluice restore", rate, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.0f", r.rate) }))
	fmt.Fprintf(w, "  %-34s %10.0f rec/s   (one client, all partitions; per run:%s)\n", "raw read_committed consume", raw, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.0f", r.rawRate) }))
	fmt.Fprintf(w, "  tasks' restore times summed %v (median), first task's start to last task's end %v, worker start to last task restored %v; others %.2f CPUs\n",
		time.Duration(med(func(r restoreResult) float64 { return float64(r.took) })).Round(time.Millisecond),
		time.Duration(med(func(r restoreResult) float64 { return float64(r.span) })).Round(time.Millisecond),
		time.Duration(med(func(r restoreResult) float64 { return float64(r.wall) })).Round(time.Millisecond),
		med(func(r restoreResult) float64 { return r.others }))
	verdict := "ok"
	if rate < 500_000 {
		verdict = "BELOW TARGET"
	}
	fmt.Fprintf(w, "%-36s = %.0f rec/s (target >= 500000) %s\n", "restore rate", rate, verdict)
	fmt.Fprintf(w, "%-36s = %.2f   per run:%s\n", "restore/raw_read_committed", rate/raw, perRun(rs, func(r restoreResult) string { return fmt.Sprintf(" %.2f", r.rate/r.rawRate) }))
}

func perRun[T any](rs []T, f func(T) string) string {
	s := ""
	for _, r := range rs {
		s += f(r)
	}
	return s
}

// stateBenchNames are the benchmarks -only selects besides the variants.
var stateBenchNames = []string{"restore", "restart", "rebalance", "rss"}

// stateBenches says which of them run.
type stateBenches struct{ restore, restart, rebalance, rss bool }

func (b *stateBenches) choose(name string) bool {
	switch name {
	case "restore":
		b.restore = true
	case "restart":
		b.restart = true
	case "rebalance":
		b.rebalance = true
	case "rss":
		b.rss = true
	default:
		return false
	}
	return true
}

// parseKeys parses -restart-keys.
func parseKeys(s string) ([]int64, error) {
	var keys []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := strconv.ParseInt(f, 10, 64)
		if err != nil || k <= 0 {
			return nil, fmt.Errorf("-restart-keys: %q is not a positive number", f)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// stateResults holds the state benchmarks' figures.
type stateResults struct {
	rb      *restoreBench
	restore []restoreResult
	restart []restartResult
	rss     *rssResult
	rebal   []rebalanceResult
	// wrong are the outputs found wrong after a measurement.
	wrong []string
}

// restoreRun measures the restore once (again, like a variant, when
// other processes disturbed it); the changelog is written on first use.
func (sr *stateResults) restoreRun(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, runNo int, progress io.Writer) error {
	if sr.rb == nil {
		rb, err := setupRestore(ctx, o, e, prefix, progress)
		sr.rb = rb
		if err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		res, err := sr.rb.measure(ctx, o, e, adm, runNo, progress)
		if err != nil {
			return err
		}
		fmt.Fprintf(progress, "run %d: %-18s %9.0f rec/s  (%d records, took %v, span %v, wall %v)  raw read_committed %9.0f rec/s  (%d records in %v)  others %.2f\n",
			runNo, "restore", res.rate, res.records, res.took.Round(time.Millisecond), res.span.Round(time.Millisecond), res.wall.Round(time.Millisecond),
			res.rawRate, res.rawRecords, res.rawElapsed.Round(time.Millisecond), res.others)
		if o.maxOthers <= 0 || res.others <= o.maxOthers || attempt > o.retries {
			sr.restore = append(sr.restore, res)
			return nil
		}
		fmt.Fprintf(progress, "run %d: restore: other processes kept %.2f CPUs busy meanwhile (-max-others %.2f); measuring again\n", runNo, res.others, o.maxOthers)
	}
}

// once runs the benchmarks that run once per invocation: restart,
// rebalance, rss.
func (sr *stateResults) once(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, b stateBenches, restartKeys []int64, progress io.Writer) error {
	if b.restart {
		for _, k := range restartKeys {
			res, err := measureRestart(ctx, o, e, adm, prefix, k, o.runs, progress)
			if cf := (*checkFailure)(nil); errors.As(err, &cf) {
				sr.wrong = append(sr.wrong, fmt.Sprintf("restart, %d keys: %v", k, err))
				fmt.Fprintf(progress, "restart %d keys: WRONG OUTPUT: %v\n", k, err)
			} else if err != nil {
				return fmt.Errorf("restart, %d keys: %w", k, err)
			}
			sr.restart = append(sr.restart, res...)
		}
	}
	if b.rebalance {
		res, err := measureRebalance(ctx, o, e, adm, prefix, o.rebalanceKeys, o.runs, progress)
		if cf := (*checkFailure)(nil); errors.As(err, &cf) {
			sr.wrong = append(sr.wrong, fmt.Sprintf("rebalance, %d keys: %v", o.rebalanceKeys, err))
			fmt.Fprintf(progress, "rebalance %d keys: WRONG OUTPUT: %v\n", o.rebalanceKeys, err)
		} else if err != nil {
			return fmt.Errorf("rebalance, %d keys: %w", o.rebalanceKeys, err)
		}
		sr.rebal = res
	}
	if b.rss {
		res, err := measureRSS(ctx, o, e, adm, prefix, o.rssKeys, progress)
		if cf := (*checkFailure)(nil); errors.As(err, &cf) {
			sr.wrong = append(sr.wrong, fmt.Sprintf("rss, %d keys: %v", o.rssKeys, err))
			fmt.Fprintf(progress, "rss %d keys: WRONG OUTPUT: %v\n", o.rssKeys, err)
		} else if err != nil {
			return fmt.Errorf("rss, %d keys: %w", o.rssKeys, err)
		}
		sr.rss = &res
	}
	return nil
}

func (sr *stateResults) report(w io.Writer, o options) {
	reportRestore(w, o, sr.restore)
	reportRestart(w, o, sr.restart)
	reportRebalance(w, o, sr.rebal)
	reportRSS(w, sr.rss)
}

// failed returns an error when an output was found wrong.
func (sr *stateResults) failed() error {
	if len(sr.wrong) == 0 {
		return nil
	}
	return fmt.Errorf("wrong output (the figures above stand): %s", strings.Join(sr.wrong, "; "))
}

// cleanup deletes the restore benchmark's topics.
func (sr *stateResults) cleanup(adm *kadm.Client) {
	if sr.rb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm.DeleteTopics(ctx, sr.rb.in, sr.rb.out, sr.rb.changelog, topology.DLQTopic(sr.rb.app))
}

// workerEnv is what -worker-env adds to the worker processes' environment.
func (o options) workerEnv() []string {
	var env []string
	for _, kv := range strings.Split(o.workerEnvList, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			env = append(env, kv)
		}
	}
	return env
}
