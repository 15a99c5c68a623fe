package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The bounded benchmark: a worker process (the dedup topology,
// DedupByKey over the record timestamps) reads -bounded-events events
// whose timestamps advance evenly over -bounded-span of event time, with
// a dedup span of -bounded-dedup-span. Its state must stay that of one
// span: the ids its stores hold at the end (the live ids: every entry,
// whether past its expiry or not, since an entry no expiry pass removed
// is state all the same) at most 1.2 times the distinct ids of the last
// span of event time, and its peak RSS at most 300 MB. The entries whose
// expiry is after their task's stream time are reported too; they are
// about one span's ids whether expiry runs or not, so they are no test
// of it. It also reports the state directory's size on disk, and checks
// the output: every distinct id exactly once.

// The input's irregularities: every boundedRepeatEvery-th event repeats
// a recent id (one of the last quarter span's ids: the dedup drops it),
// and every boundedLateEvery-th one is a new id whose timestamp is a
// sixth of the span behind the others (out of order, still checked).
const (
	boundedRepeatEvery = 100
	boundedLateEvery   = 1000
	boundedLateOffset  = 500 // which event of each boundedLateEvery
	boundedValueSize   = 16
)

// boundedBase is the event time of the first event: fixed, so that the
// input is the same in every run (the worker never reads the wall clock).
var boundedBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// boundedInput is what the bounded benchmark produced.
type boundedInput struct {
	n        int64
	distinct int64 // distinct ids: ids are 0..distinct-1
	repeats  int64
	late     int64
	window   int64 // distinct ids among the events of the last dedup span
	last     time.Time
	// streamTime is the largest timestamp of each partition: the stream
	// time its task ends at.
	streamTime map[int32]time.Time
}

// boundedEvent is event i of the input.
type boundedEvent struct {
	id int64
	ts time.Time
}

// boundedEvents generates the input's events, in order; it is
// deterministic.
type boundedEvents struct {
	n           int64
	span, dspan time.Duration
	rng         *rand.Rand
	next        int64 // the next new id
}

func newBoundedEvents(n int64, span, dspan time.Duration) *boundedEvents {
	return &boundedEvents{n: n, span: span, dspan: dspan, rng: rand.New(rand.NewPCG(1, 2))}
}

// at returns the in-order timestamp of event i.
func (g *boundedEvents) at(i int64) time.Time {
	hi, lo := bits.Mul64(uint64(i), uint64(g.span.Milliseconds()))
	ms, _ := bits.Div64(hi, lo, uint64(g.n))
	return boundedBase.Add(time.Duration(ms) * time.Millisecond)
}

// event returns event i (called for i = 0, 1, ... in order) and whether
// it repeats an id, or is late.
func (g *boundedEvents) event(i int64) (e boundedEvent, repeat, late bool) {
	e.ts = g.at(i)
	if i%boundedRepeatEvery == boundedRepeatEvery-1 && g.next > 0 {
		// One of the ids of the last quarter span: events and new ids
		// advance alike, so that is about n/span*dspan/4 ids back.
		back := max(1, min(g.next, int64(float64(g.n)*float64(g.dspan)/float64(g.span)/4)))
		e.id = g.next - 1 - g.rng.Int64N(back)
		return e, true, false
	}
	e.id = g.next
	g.next++
	if i%boundedLateEvery == boundedLateOffset {
		if e.ts = e.ts.Add(-g.dspan / 6); e.ts.Before(boundedBase) {
			e.ts = boundedBase
		}
		return e, false, true
	}
	return e, false, false
}

func boundedKey(id int64) []byte { return []byte("i" + strconv.FormatInt(id, 10)) }

// produceBounded writes the input to topic, each record with its event's
// timestamp, and returns what it holds.
func produceBounded(ctx context.Context, brokers []string, topic string, n int64, span, dspan time.Duration) (boundedInput, error) {
	in := boundedInput{n: n, streamTime: map[int32]time.Time{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		return in, err
	}
	defer cl.Close()
	var mu sync.Mutex
	var firstErr error
	done := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("producing %s: %w", r.Key, err)
			}
			return
		}
		if r.Timestamp.After(in.streamTime[r.Partition]) {
			in.streamTime[r.Partition] = r.Timestamp
		}
	}
	g := newBoundedEvents(n, span, dspan)
	in.last = g.at(n - 1)
	windowFrom := in.last.Add(-dspan) // the last span: (windowFrom, last]
	inWindow := make([]uint64, (n+63)/64)
	for i := int64(0); i < n; i++ {
		e, repeat, late := g.event(i)
		switch {
		case repeat:
			in.repeats++
		case late:
			in.late++
		}
		if e.ts.After(windowFrom) && inWindow[e.id/64]&(1<<(e.id%64)) == 0 {
			inWindow[e.id/64] |= 1 << (e.id % 64)
			in.window++
		}
		cl.Produce(ctx, &kgo.Record{Key: boundedKey(e.id), Value: txntest.SeqValue(i, boundedValueSize), Timestamp: e.ts}, done)
	}
	in.distinct = g.next
	if err := cl.Flush(ctx); err != nil {
		return in, err
	}
	mu.Lock()
	defer mu.Unlock()
	return in, firstErr
}

// boundedResult is the bounded benchmark's figures.
type boundedResult struct {
	in            boundedInput
	span, dspan   time.Duration
	elapsed       time.Duration
	hwm, final    int64 // VmHWM and VmRSS at the end
	peakAt        int64 // input records committed when RSS peaked
	peak          memSample
	profile       string // heap profile at the largest live heap
	settings      string // non-default worker settings
	diskMax       int64
	diskFinal     int64
	timeline      []boundedPoint
	live, entries int64 // ids kept at the end: live, and all of them
	output        string
}

type boundedPoint struct {
	committed int64
	rss, disk int64
	at        time.Duration
}

// measureBounded runs the bounded benchmark.
func measureBounded(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, progress io.Writer) (boundedResult, error) {
	res := boundedResult{span: o.boundedSpan, dspan: o.boundedDedupSpan}
	name := prefix + "-bounded"
	a := &stateApp{app: name, in: name + "-in", out: name + "-out"}
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), a.in, a.out); err != nil {
		return res, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm.DeleteTopics(dctx, a.in, a.out, dedupChangelog(a.app), topology.DLQTopic(a.app))
		if a.dir != "" {
			os.RemoveAll(a.dir)
		}
	}()
	fmt.Fprintf(progress, "bounded: producing %d events over %v of event time...\n", o.boundedEvents, o.boundedSpan)
	produceStart := time.Now()
	in, err := produceBounded(ctx, e.brokers, a.in, o.boundedEvents, o.boundedSpan, o.boundedDedupSpan)
	res.in = in
	if err != nil {
		return res, fmt.Errorf("producing the input: %w", err)
	}
	fmt.Fprintf(progress, "bounded: produced in %v: %d distinct ids, %d repeats, %d late; the last %v holds %d distinct ids\n",
		time.Since(produceStart).Round(time.Second), in.distinct, in.repeats, in.late, o.boundedDedupSpan, in.window)
	var total int64
	if a.ends, total, err = inputEnds(ctx, adm, a.in); err != nil {
		return res, err
	}
	if total != in.n {
		return res, fmt.Errorf("the input holds %d records, want %d", total, in.n)
	}
	if a.dir, err = os.MkdirTemp("", "sluice-bench-bounded-"); err != nil {
		return res, err
	}
	cfg := a.config(o, e)
	cfg.Topology, cfg.DedupSpan, cfg.MemEvery = topologyDedup, o.boundedDedupSpan, time.Second
	cfg.HeapProfile = o.heapProfile("bounded-heap.pprof")
	res.profile = cfg.HeapProfile
	res.settings = o.workerSettings()
	runtime.GC()
	c, err := startChild(cfg, o.workerEnv(), "bounded", progress)
	if err != nil {
		return res, err
	}
	defer c.Kill()
	wctx, cancel := context.WithTimeout(ctx, 4*o.timeout)
	defer cancel()
	pid := c.Pid()
	next := int64(0)
	var lastLog, lastDisk time.Time
	var disk int64
	err = waitOffsets(wctx, adm, c, a.app, a.in, a.ends, func(got kadm.OffsetResponses) {
		committed := committedTotal(got, a.in)
		st := procStatus(pid)
		if st["VmHWM"] > res.hwm {
			res.hwm, res.peakAt = st["VmHWM"], committed
		}
		if time.Since(lastDisk) >= 500*time.Millisecond {
			lastDisk, disk = time.Now(), dirSize(a.dir)
			res.diskMax = max(res.diskMax, disk)
		}
		if rss := st["VmRSS"]; rss > 0 && committed >= next {
			res.timeline = append(res.timeline, boundedPoint{committed: committed, rss: rss, disk: disk, at: time.Since(c.Started)})
			next = committed + in.n/10
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(progress, "bounded: %d of %d committed, RSS %d MB, state on disk %.1f MB\n", committed, in.n, st["VmRSS"]>>20, float64(disk)/(1<<20))
		}
	})
	if err != nil {
		return res, err
	}
	res.elapsed = time.Since(c.Started)
	st := procStatus(pid)
	res.hwm, res.final = st["VmHWM"], st["VmRSS"]
	res.peak = c.state().memPeak
	disk = dirSize(a.dir)
	res.diskMax = max(res.diskMax, disk)
	res.timeline = append(res.timeline, boundedPoint{committed: in.n, rss: res.final, disk: disk, at: res.elapsed})
	if err := c.Stop(stopTimeout); err != nil {
		return res, err
	}
	res.diskFinal = dirSize(a.dir)
	res.diskMax = max(res.diskMax, res.diskFinal)
	if res.live, res.entries, err = countLiveIDs(a.dir, in.streamTime); err != nil {
		return res, fmt.Errorf("reading the ids kept: %w", err)
	}
	vctx, vcancel := context.WithTimeout(ctx, o.timeout)
	defer vcancel()
	res.output, err = checkBoundedOutput(vctx, e.brokers, a.out, in.distinct)
	if err != nil {
		return res, &checkFailure{err}
	}
	return res, nil
}

// dirSize returns the bytes of the files under dir; files removed
// meanwhile (Pebble's compactions) are skipped.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n
}

// countLiveIDs opens every task database under dir (its worker stopped)
// and counts the dedup store's entries: live, those whose expiry is
// after their task's stream time (streamTime, by partition), and all.
func countLiveIDs(dir string, streamTime map[int32]time.Time) (live, all int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, de := range entries {
		sub, part, ok := strings.Cut(de.Name(), "_")
		p, perr := strconv.ParseInt(part, 10, 32)
		if !ok || sub != "0" || perr != nil || !de.IsDir() {
			continue
		}
		l, n, err := countTaskIDs(filepath.Join(dir, de.Name()), streamTime[int32(p)])
		if err != nil {
			return 0, 0, fmt.Errorf("task %s: %w", de.Name(), err)
		}
		live, all = live+l, all+n
	}
	return live, all, nil
}

func countTaskIDs(dir string, streamTime time.Time) (live, all int64, err error) {
	db, err := state.Open(dir, state.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	// The dedup's store as stream.DedupByKey declares it: string ids, no
	// value. Its segments' width is the writer's concern (they are named
	// by their end): any reads them.
	ids, err := state.NewSegmented(db, dedupStore, "", nil, state.Codec[string](serde.String), state.Codec[[]byte](serde.Bytes), time.Minute)
	if err != nil {
		return 0, 0, err
	}
	err = ids.Scan(func(_ string, _ []byte, expires time.Time) error {
		all++
		if expires.After(streamTime) {
			live++
		}
		return nil
	})
	return live, all, err
}

// checkBoundedOutput reads the output back with read_committed: every id
// of [0, distinct) exactly once, and nothing else. It returns a summary.
func checkBoundedOutput(ctx context.Context, brokers []string, topic string, distinct int64) (string, error) {
	seen := make([]uint8, distinct)
	var records, repeats, foreign int64
	err := txntest.ReadCommitted(ctx, brokers, topic, func(r *kgo.Record) {
		records++
		id, err := strconv.ParseInt(strings.TrimPrefix(string(r.Key), "i"), 10, 64)
		if err != nil || !strings.HasPrefix(string(r.Key), "i") || id < 0 || id >= distinct {
			foreign++
			return
		}
		if seen[id] > 0 {
			repeats++
		}
		seen[id] = min(seen[id]+1, 255)
	}, func() bool { return records >= distinct })
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("reading %s back: %w", topic, err)
	}
	var missing int64
	for _, s := range seen {
		if s == 0 {
			missing++
		}
	}
	sum := fmt.Sprintf("%d records: %d distinct ids of %d, %d repeated, %d missing, %d foreign", records, distinct-missing, distinct, repeats, missing, foreign)
	if missing > 0 || repeats > 0 || foreign > 0 {
		return sum, fmt.Errorf("the output of %s is wrong: %s", topic, sum)
	}
	return sum, nil
}

func reportBounded(w io.Writer, r *boundedResult) {
	if r == nil {
		return
	}
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	mb1 := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	in := r.in
	fmt.Fprintln(w)
	settings := "defaults"
	if r.settings != "" {
		settings = strings.TrimSpace(r.settings)
	}
	fmt.Fprintf(w, "bounded: a worker process (DedupByKey, span %v, exactly_once; worker settings: %s) over %d events spanning %v of event time: %d distinct ids, %d repeats of recent ids, %d out of order by %v (%v)\n",
		r.dspan, settings, in.n, r.span, in.distinct, in.repeats, in.late, r.dspan/6, r.elapsed.Round(time.Second))
	var tl []string
	for _, p := range r.timeline {
		tl = append(tl, fmt.Sprintf("%dk:%s/%s", p.committed/1000, mb(p.rss), mb1(p.disk)))
	}
	fmt.Fprintf(w, "  RSS/state on disk by input records committed: %s\n", strings.Join(tl, ", "))
	fmt.Fprintf(w, "  VmHWM %s, reached by %d input records committed; RSS at the end %s\n", mb(r.hwm), r.peakAt, mb(r.final))
	if p := r.peak; p.rss > 0 {
		fmt.Fprintf(w, "  at its largest reported RSS (%s): Go runtime holds %s (heap objects %s, heap goal %s); outside Go (cgo: Pebble's cache and memtables) about %s\n",
			mb(p.rss), mb(p.goResident()), mb(p.heapObjects), mb(p.heapGoal), mb(max(0, p.rss-p.goResident())))
	}
	fmt.Fprintf(w, "  heap profile at the largest live heap: %s\n", r.profile)
	fmt.Fprintf(w, "  ids the stores hold at the end: %d (%d of them unexpired: expiry after their task's stream time); one window's ids (distinct ids of the last %v of event time): %d\n",
		r.entries, r.live, r.dspan, in.window)
	fmt.Fprintf(w, "  output: %s\n", r.output)
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "ABOVE TARGET"
	}
	// The ids the stores hold, expired or not: an entry past its expiry
	// that no pass removed is state all the same. (The unexpired ones
	// are one window's by construction, whether expiry runs or not.)
	ratio := float64(r.entries) / float64(max(1, in.window))
	fmt.Fprintf(w, "%-36s = %.2f (target <= 1.2) %s\n", "live ids / one window's ids", ratio, verdict(ratio <= 1.2))
	fmt.Fprintf(w, "%-36s = %.2f\n", "  unexpired ids / one window's ids", float64(r.live)/float64(max(1, in.window)))
	fmt.Fprintf(w, "%-36s = %s (target <= 300 MB) %s\n", "peak RSS", mb(r.hwm), verdict(r.hwm <= 300<<20))
	fmt.Fprintf(w, "%-36s : largest %s, final %s\n", "state on disk", mb1(r.diskMax), mb1(r.diskFinal))
}
