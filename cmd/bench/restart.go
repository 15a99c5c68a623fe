package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The benchmarks with a worker in its own process (child.go):
//
//	restart  fill a worker's store to K keys (-restart-keys, each size in
//	         turn), SIGKILL it while it processes more, restart it with
//	         the same instance id and state directory, and time the new
//	         process from its exec to its first committed transaction
//	rss      fill a worker's store to -rss-keys keys and process on; its
//	         peak RSS (VmHWM) at the end

// feedRate is the records/s fed to the restart benchmark's input once
// the fill is committed, for feedBeforeKill before the kill and until a
// second after the restarted worker's first commit: the worker is killed,
// and comes back, mid-stream, with about the same small backlog whatever
// the store's size.
const (
	feedRate       = 20_000
	feedBeforeKill = 2 * time.Second
)

// restartResult is one restart measurement.
type restartResult struct {
	keys            int64
	cycle           int           // which kill of the same store
	filled          time.Duration // the first worker's start to its store holding every key
	fill            time.Duration // the first worker's start to its kill
	committedAtKill int64         // input records committed when it was killed
	lag             int64         // changelog records past the tasks' checkpoints at the kill
	lagTasks        []string      // task:records of those behind
	restart         time.Duration // the new process's exec to its first commit
	allTasks        time.Duration // exec to the last of its tasks restored (every partition processing again)
	toMain          time.Duration // exec to main
	toFetch         time.Duration // exec to the first fetched batch
	restoredTasks   int
	restored        int64         // changelog records replayed before the first commit
	restoreTook     time.Duration // their restore time, summed over the tasks
	firstTxn        int64         // input records of the first commit
	early           []string      // what happened before the first commit
	restores        []string      // every restore of the restarted worker
	others          float64
}

// inputEnds returns the end offset of each partition of topic, and their
// sum.
func inputEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, 0, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	var total int64
	listed.Each(func(l kadm.ListedOffset) {
		ends[l.Partition] = l.Offset
		total += l.Offset
	})
	return ends, total, nil
}

// committedTotal returns the group's committed offsets on topic, summed.
func committedTotal(got kadm.OffsetResponses, topic string) int64 {
	var n int64
	got.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// waitOffsets polls the group's committed offsets every 20ms until they
// reach target on every partition of topic; each poll's answer goes to
// each (nil: none). It gives up when the worker exits or ctx is done.
func waitOffsets(ctx context.Context, adm *kadm.Client, c *childProc, group, topic string, target map[int32]int64, each func(kadm.OffsetResponses)) error {
	for {
		got, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			if each != nil {
				each(got)
			}
			if covered(got, topic, target) {
				return nil
			}
		}
		if err := c.Alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the commit of %s: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stateApp is one child-process benchmark's app: topics, input, state.
type stateApp struct {
	app, in, out string
	dir          string
	fillEnds     map[int32]int64 // input end offsets after the fill
	ends         map[int32]int64 // after the tail
	n            int64           // input records
	keys         int64
}

// newStateApp creates the topics and the input: keys records with
// distinct keys (the fill: every one a new key in the store), then tail
// records whose keys repeat those (the store stays at keys keys).
func newStateApp(ctx context.Context, o options, e env, adm *kadm.Client, name string, keys, tail int64, progress io.Writer) (*stateApp, error) {
	a := &stateApp{app: name, in: name + "-in", out: name + "-out", n: keys + tail, keys: keys}
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), a.in, a.out); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: producing %d input records with %d distinct keys...\n", name, a.n, keys)
	if err := txntest.Produce(ctx, e.brokers, a.in, 0, keys, keys, o.valueSize); err != nil {
		return nil, fmt.Errorf("producing the input: %w", err)
	}
	var err error
	if a.fillEnds, _, err = inputEnds(ctx, adm, a.in); err != nil {
		return nil, err
	}
	if err := txntest.Produce(ctx, e.brokers, a.in, keys, keys+tail, keys, o.valueSize); err != nil {
		return nil, fmt.Errorf("producing the input: %w", err)
	}
	var total int64
	if a.ends, total, err = inputEnds(ctx, adm, a.in); err != nil {
		return nil, err
	}
	if total != a.n {
		return nil, fmt.Errorf("the input holds %d records, want %d", total, a.n)
	}
	if a.dir, err = os.MkdirTemp("", "sluice-bench-"+name+"-"); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *stateApp) config(o options, e env) childConfig {
	return childConfig{Brokers: e.brokers, App: a.app, In: a.in, Out: a.out, StateDir: a.dir, Instance: "0", FetchMaxBytes: o.workerFetchMaxBytes}
}

// cleanup deletes the app's topics and state.
func (a *stateApp) cleanup(adm *kadm.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm.DeleteTopics(ctx, a.in, a.out, changelogOf(a.app), topology.DLQTopic(a.app))
	os.RemoveAll(a.dir)
}

// checkFailure is a wrong output found after a measurement: the figures
// stand and are reported, and the run fails.
type checkFailure struct{ err error }

func (c *checkFailure) Error() string { return c.err.Error() }
func (c *checkFailure) Unwrap() error { return c.err }

// check verifies the count's output: every input record counted once.
func (a *stateApp) check(ctx context.Context, o options, e env) error {
	vctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return checkCounts(vctx, e.brokers, a.out, a.n, a.keys)
}

// measureRestart fills a worker's store to keys keys; then, cycles times,
// lets it process a live stream for feedBeforeKill, SIGKILLs it, restarts
// it and times its way back to a commit; then lets the last one finish
// and checks the counts (every record counted exactly once across the
// kills). It returns one result per cycle.
func measureRestart(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, keys int64, cycles int, progress io.Writer) ([]restartResult, error) {
	var rs []restartResult
	a, err := newStateApp(ctx, o, e, adm, fmt.Sprintf("%s-restart-%d", prefix, keys), keys, 0, progress)
	if a != nil {
		defer a.cleanup(adm)
	}
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout+time.Duration(cycles)*time.Minute)
	defer cancel()
	w, err := a.startFilled(wctx, o, adm, a.config(o, e), "first", fmt.Sprintf("restart %d keys", keys), progress)
	if err != nil {
		return nil, err
	}
	defer func() { w.Kill() }()
	filled := time.Since(w.Started)
	fmt.Fprintf(progress, "restart %d keys: store filled after %v\n", keys, filled.Round(time.Millisecond))
	// Every key is in the store; the worker goes on with a live stream.
	feed, err := startFeeder(wctx, e.brokers, a.in, keys, keys, o.valueSize, feedRate)
	if err != nil {
		return nil, err
	}
	defer feed.stop()
	for c := 1; c <= cycles; c++ {
		res := restartResult{keys: keys, cycle: c, filled: filled}
		if o.quiet > 0 {
			// The restart is timed: start it on a quiet machine if there
			// is one (the worker keeps up with the feed meanwhile).
			waitQuiet(quietCPUs, o.quiet)
		}
		time.Sleep(feedBeforeKill)
		if err := w.Alive(); err != nil {
			return rs, err
		}
		w.Kill()
		res.fill = time.Since(w.Started)
		if got, err := adm.FetchOffsets(ctx, a.app); err == nil {
			res.committedAtKill = committedTotal(got, a.in)
		}
		res.lag, res.lagTasks, err = checkpointLag(ctx, adm, a.dir, changelogOf(a.app))
		if err != nil {
			return rs, err
		}
		fmt.Fprintf(progress, "restart %d keys, cycle %d: SIGKILLed with %d input records committed (%d fed so far), the tasks' checkpoints %d changelog offsets behind; restarting\n",
			keys, c, res.committedAtKill, feed.produced()-keys, res.lag)

		runtime.GC()
		cfg := a.config(o, e)
		if o.cpuprofile != "" {
			cfg.CPUProfile = filepath.Join(o.cpuprofile, fmt.Sprintf("restart-%d-c%d.pprof", keys, c))
			cfg.Trace = filepath.Join(o.cpuprofile, fmt.Sprintf("restart-%d-c%d.trace", keys, c))
		}
		before := sampleCPU()
		w, err = startChild(cfg, o.workerEnv(), fmt.Sprintf("restarted-%d", c), progress)
		if err != nil {
			return rs, err
		}
		if err := w.wait(wctx, func(st *childState) bool { return !st.firstCommit.IsZero() }); err != nil {
			return rs, fmt.Errorf("waiting for the restarted worker's first commit: %w", err)
		}
		st := w.state()
		res.restart = st.firstCommit.Sub(w.Started)
		// The worker is another process: its CPU is not the others'.
		res.others = max(0, othersCPU(before, sampleCPU(), time.Since(w.Started))-procCPU(w.Pid()).Seconds()/time.Since(w.Started).Seconds())
		res.toMain = st.started.Sub(w.Started)
		if !st.firstFetch.IsZero() {
			res.toFetch = st.firstFetch.Sub(w.Started)
		}
		res.firstTxn = st.firstTxn
		res.early = st.early
		for _, r := range st.restored {
			if r.at.Before(st.firstCommit) {
				res.restoredTasks++
				res.restored += r.records
				res.restoreTook += r.took
			}
		}
		if err := w.wait(wctx, func(st *childState) bool { return len(st.restored) >= o.partitions }); err != nil {
			return rs, fmt.Errorf("waiting for the restarted worker's tasks: %w", err)
		}
		restored := w.state().restored
		res.allTasks = restored[len(restored)-1].at.Sub(w.Started)
		for _, r := range restored {
			res.restores = append(res.restores, fmt.Sprintf("%v task %s restored %d records in %v", r.at.Sub(w.Started).Round(time.Millisecond), r.task, r.records, r.took.Round(time.Millisecond)))
		}
		fmt.Fprintf(progress, "restart %d keys, cycle %d: first commit %v after the restart, every task back after %v\n", keys, c, res.restart.Round(time.Millisecond), res.allTasks.Round(time.Millisecond))
		rs = append(rs, res)
	}
	time.Sleep(time.Second)
	return rs, a.finish(ctx, wctx, o, e, adm, w, feed, fmt.Sprintf("%d SIGKILLs and restarts", cycles))
}

// startFilled starts a worker process with cfg, labelled label, and waits
// until it has committed the app's fill (every key in its store); what
// names the benchmark in the progress lines. A worker that does not get
// there is killed.
func (a *stateApp) startFilled(wctx context.Context, o options, adm *kadm.Client, cfg childConfig, label, what string, progress io.Writer) (*childProc, error) {
	w, err := startChild(cfg, o.workerEnv(), label, progress)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: filling the store...\n", what)
	if err := waitOffsets(wctx, adm, w, a.app, a.in, a.fillEnds, nil); err != nil {
		w.Kill()
		return nil, fmt.Errorf("filling the store: %w", err)
	}
	return w, nil
}

// finish stops feeding, waits until worker w has committed the whole
// input, stops it and checks the counts; after says what came before, for
// the errors. wctx bounds the wait.
func (a *stateApp) finish(ctx, wctx context.Context, o options, e env, adm *kadm.Client, w *childProc, feed *feeder, after string) error {
	var err error
	if a.n, err = feed.stop(); err != nil {
		return fmt.Errorf("feeding the input: %w", err)
	}
	if a.ends, _, err = inputEnds(ctx, adm, a.in); err != nil {
		return err
	}
	if err := waitOffsets(wctx, adm, w, a.app, a.in, a.ends, nil); err != nil {
		return fmt.Errorf("after the %s: %w", after, err)
	}
	if err := w.Stop(stopTimeout); err != nil {
		return err
	}
	if err := a.check(ctx, o, e); err != nil {
		return &checkFailure{fmt.Errorf("after %s: %w", after, err)}
	}
	return nil
}

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

// procCPU returns the CPU time (user and system) a process has used so
// far, from /proc/<pid>/stat; 0 when unknown.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may hold spaces: the fields that follow it start after
	// its closing parenthesis; utime and stime are the 14th and 15th.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
}

// checkpointLag reads the checkpoint of every task database in dir,
// read-only (state.ReadCheckpoint: the restarted worker finds each
// database as the killed one left it), and returns how far the
// checkpoints are behind the changelog's read_committed end, in offsets
// (data records and commit markers), summed over the tasks, with the
// tasks that are behind.
func checkpointLag(ctx context.Context, adm *kadm.Client, dir, changelog string) (int64, []string, error) {
	ends, err := adm.ListCommittedOffsets(ctx, changelog)
	if err != nil {
		return 0, nil, fmt.Errorf("listing the ends of %s: %w", changelog, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	var lag int64
	var behind []string
	for _, de := range entries {
		sub, part, ok := strings.Cut(de.Name(), "_")
		p, err := strconv.ParseInt(part, 10, 32)
		if !ok || sub != "0" || err != nil || !de.IsDir() {
			continue
		}
		cp, err := state.ReadCheckpoint(filepath.Join(dir, de.Name()), state.Options{})
		if err != nil {
			return 0, nil, fmt.Errorf("task %s: %w", de.Name(), err)
		}
		end, _ := ends.Lookup(changelog, int32(p))
		if d := end.Offset - cp.Offsets[changelog]; d > 0 {
			lag += d
			behind = append(behind, fmt.Sprintf("%s:%d", de.Name(), d))
		}
	}
	return lag, behind, nil
}

func reportRestart(w io.Writer, o options, rs []restartResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "restart: a worker process (count topology, exactly_once, %d partitions) with K keys in its store, processing %d records/s,\n", o.partitions, feedRate)
	fmt.Fprintf(w, " SIGKILLed and restarted at once with the same instance id and state directory; exec of the new process to its first commit\n")
	fmt.Fprintf(w, "%10s %5s %10s %9s %9s %9s %8s %10s %9s %9s %10s %6s\n", "keys", "cycle", "restart", "to main", "to fetch", "all tasks", "lag", "restored", "in", "1st txn", "killed at", "others")
	for _, r := range rs {
		fmt.Fprintf(w, "%10d %5d %10v %9v %9v %9v %8d %10d %9v %9d %10d %6.2f\n", r.keys, r.cycle, r.restart.Round(time.Millisecond), r.toMain.Round(time.Millisecond),
			r.toFetch.Round(time.Millisecond), r.allTasks.Round(time.Millisecond), r.lag, r.restored, r.restoreTook.Round(time.Millisecond), r.firstTxn, r.committedAtKill, r.others)
	}
	fmt.Fprintln(w, "(all tasks: to the last of the restarted worker's tasks restored, when every partition is processed again;")
	fmt.Fprintln(w, " lag: changelog offsets past the killed worker's checkpoints; restored: changelog records replayed before the first")
	fmt.Fprintln(w, " commit, in: their restore time summed over the tasks; 1st txn: input records of the first commit; killed at: input")
	fmt.Fprintln(w, " records committed when the worker was killed; others: CPUs other processes than the bench and the worker kept busy)")
	var keys []int64
	medians := map[int64]time.Duration{}
	for _, r := range rs {
		if _, ok := medians[r.keys]; !ok {
			keys = append(keys, r.keys)
		}
		medians[r.keys] = 0
	}
	for _, k := range keys {
		var ds []float64
		for _, r := range rs {
			if r.keys == k {
				ds = append(ds, float64(r.restart))
			}
		}
		slices.Sort(ds)
		m := ds[len(ds)/2]
		if len(ds)%2 == 0 {
			m = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		medians[k] = time.Duration(m)
		verdict := "ok"
		if time.Duration(ds[len(ds)-1]) >= 2*time.Second {
			verdict = "BELOW TARGET"
		}
		fmt.Fprintf(w, "%-36s = %v median, max %v over %d restarts (target < 2s) %s\n", "restart to first commit, "+strconv.FormatInt(k, 10)+" keys",
			medians[k].Round(time.Millisecond), time.Duration(ds[len(ds)-1]).Round(time.Millisecond), len(ds), verdict)
	}
	if len(keys) > 1 {
		small, big := slices.Min(keys), slices.Max(keys)
		fmt.Fprintf(w, "%-36s = %.2f (medians, %d keys against %d keys: %.0fx the store)\n", "restart time ratio", medians[big].Seconds()/medians[small].Seconds(),
			big, small, float64(big)/float64(small))
	}
	if o.verbose {
		for _, r := range rs {
			fmt.Fprintf(w, "restart %d keys, cycle %d, before the first commit (since exec):\n  %s\n", r.keys, r.cycle, strings.Join(r.early, "\n  "))
			fmt.Fprintf(w, "restart %d keys, cycle %d: checkpoints behind at the kill (task:offsets) %v; every restore of the restarted worker:\n  %s\n", r.keys, r.cycle, r.lagTasks, strings.Join(r.restores, "\n  "))
		}
	}
}

// rssResult is the peak memory of a worker with a large store.
type rssResult struct {
	keys    int64
	n       int64
	elapsed time.Duration
	hwm     int64 // VmHWM at the end
	final   int64 // VmRSS at the end
	peakAt  int64 // input records committed when RSS peaked
	// timeline: RSS as the committed input grew, one entry per tenth.
	timeline []rssPoint
	peak     memSample // the worker's own report with the largest RSS
	profile  string    // heap profile at the largest live heap
	settings string    // non-default worker settings
}

type rssPoint struct {
	committed int64
	rss       int64
	at        time.Duration
}

// measureRSS fills a worker's store with keys distinct keys, processes a
// tenth as many records more, and reads its peak RSS.
func measureRSS(ctx context.Context, o options, e env, adm *kadm.Client, prefix string, keys int64, progress io.Writer) (rssResult, error) {
	res := rssResult{keys: keys}
	a, err := newStateApp(ctx, o, e, adm, fmt.Sprintf("%s-rss-%d", prefix, keys), keys, keys/10, progress)
	if a != nil {
		defer a.cleanup(adm)
	}
	if err != nil {
		return res, err
	}
	res.n = a.n
	cfg := a.config(o, e)
	cfg.MemEvery = time.Second
	dir := o.cpuprofile
	if dir == "" {
		dir = os.TempDir()
	}
	cfg.HeapProfile = filepath.Join(dir, fmt.Sprintf("rss-%d-heap.pprof", keys))
	res.profile = cfg.HeapProfile
	if o.workerFetchMaxBytes > 0 {
		res.settings += fmt.Sprintf(" FetchMaxBytes=%d", o.workerFetchMaxBytes)
	}
	for _, kv := range o.workerEnv() {
		res.settings += " " + kv
	}
	runtime.GC()
	c, err := startChild(cfg, o.workerEnv(), "rss", progress)
	if err != nil {
		return res, err
	}
	defer c.Kill()
	fmt.Fprintf(progress, "rss %d keys: processing %d records...\n", keys, a.n)
	wctx, cancel := context.WithTimeout(ctx, 4*o.timeout)
	defer cancel()
	pid := c.Pid()
	next := int64(0)
	var lastLog time.Time
	err = waitOffsets(wctx, adm, c, a.app, a.in, a.ends, func(got kadm.OffsetResponses) {
		committed := committedTotal(got, a.in)
		rss := procStatus(pid)["VmRSS"]
		if rss > 0 && committed >= next {
			res.timeline = append(res.timeline, rssPoint{committed: committed, rss: rss, at: time.Since(c.Started)})
			next = committed + a.n/10
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(progress, "rss %d keys: %d of %d committed, RSS %d MB\n", keys, committed, a.n, rss>>20)
		}
		if st := procStatus(pid); st["VmHWM"] > res.hwm {
			res.hwm, res.peakAt = st["VmHWM"], committed
		}
	})
	if err != nil {
		return res, err
	}
	res.elapsed = time.Since(c.Started)
	st := procStatus(pid)
	res.hwm, res.final = st["VmHWM"], st["VmRSS"]
	res.timeline = append(res.timeline, rssPoint{committed: a.n, rss: res.final, at: res.elapsed})
	res.peak = c.state().memPeak
	if err := c.Stop(stopTimeout); err != nil {
		return res, err
	}
	if err := a.check(ctx, o, e); err != nil {
		return res, &checkFailure{err}
	}
	return res, nil
}

func reportRSS(w io.Writer, r *rssResult) {
	if r == nil {
		return
	}
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	fmt.Fprintln(w)
	settings := "defaults"
	if r.settings != "" {
		settings = strings.TrimSpace(r.settings)
	}
	fmt.Fprintf(w, "rss: a worker process (count topology, exactly_once; worker settings: %s) fills its store with %d keys, then processes %d records more (%v)\n",
		settings, r.keys, r.n-r.keys, r.elapsed.Round(time.Second))
	var tl []string
	for _, p := range r.timeline {
		tl = append(tl, fmt.Sprintf("%dk:%s", p.committed/1000, mb(p.rss)))
	}
	fmt.Fprintf(w, "  RSS by input records committed: %s\n", strings.Join(tl, ", "))
	fmt.Fprintf(w, "  VmHWM %s, reached by %d input records committed; RSS at the end %s\n", mb(r.hwm), r.peakAt, mb(r.final))
	if p := r.peak; p.rss > 0 {
		fmt.Fprintf(w, "  at its largest reported RSS (%s): Go runtime holds %s (heap objects %s, heap goal %s); outside Go (cgo: Pebble's cache and memtables) about %s\n",
			mb(p.rss), mb(p.goResident()), mb(p.heapObjects), mb(p.heapGoal), mb(max(0, p.rss-p.goResident())))
	}
	fmt.Fprintf(w, "  heap profile at the largest live heap: %s\n", r.profile)
	verdict := "ok"
	if r.hwm > 300<<20 {
		verdict = "ABOVE TARGET"
	}
	fmt.Fprintf(w, "%-36s = %s (target <= 300 MB) %s\n", "peak RSS, "+strconv.FormatInt(r.keys, 10)+" keys", mb(r.hwm), verdict)
}
