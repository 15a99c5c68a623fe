// Command bench measures sluice's throughput against the baseline it must
// keep up with: a raw franz-go GroupTransactSession consume→produce loop.
// Against one broker, in one run, it measures records/s of
//
//	raw_eos          the raw loop, at most R records per transaction
//	sluice_eos       sluice passthrough, exactly_once (defaults)
//	sluice_alos      sluice passthrough, at_least_once
//	raw_eos_<T>      the raw loop, at most T records per transaction
//	sluice_eos_<T>   sluice exactly_once with MaxBatchRecords T
//	sluice_eos_count a stateful count (GroupByKey().Count() into a store,
//	                 changelogged) over input with -count-keys distinct
//	                 keys (default 100,000), exactly_once
//	sluice_eos_fanout what the count writes, without state: each input as
//	                 two 8-byte records to two topics (fanout.go; no
//	                 target, it splits the count's cost)
//
// (R is -raw-records, default 20,000 like sluice's MaxBatchRecords, so that
// both loops run transactions of the same size; T is -txn-records, default
// 1000) and prints each figure and the ratios the project targets.
//
// # State
//
// With -state (the default; -state=false runs the variants above without
// sluice_eos_count, sluice_eos_fanout and nothing else) it also measures, in the same run
// (state.go, restart.go):
//
//	restore  a worker on an empty state directory restores its 8 tasks
//	         from a changelog of -restore-records records (default
//	         1,000,000, written once, transactionally); records/s from the
//	         worker's "task restored" logs (sum of records / sum of took),
//	         against a raw read_committed consume of the same partitions
//	         with one plain client, each run; medians reported
//	restart  a worker process (this binary re-executed as a worker, see
//	         child.go) fills its store to K keys, for each K of
//	         -restart-keys (default 100,000 and 1,000,000); once every
//	         key is committed, 20,000 records/s more are fed to it, and
//	         -runs times it runs 2s on that stream, is SIGKILLed and is
//	         restarted at once with the same instance id and state
//	         directory: the time from the new process's exec to its first
//	         committed transaction (medians reported), and to all its
//	         tasks restored, with what it spent on the way; then every
//	         count is checked.
//	rebalance  a worker process with -rebalance-keys keys (default
//	         1,000,000) in its 8 tasks, fed 20,000 records/s, sees a
//	         second worker join, -runs times: the staying worker's revoke
//	         to its next commit (medians reported), and the joining
//	         worker's exec to its first commit (see rebalance.go).
//
// and, only with -rss (minutes),
//
//	rss      a worker process fills its store with -rss-keys keys (default
//	         5,000,000) and processes a tenth as many records more; its
//	         peak RSS (VmHWM), its RSS as the input is committed, and the
//	         Go runtime's share; then every count is checked. Once per
//	         invocation.
//
// -only picks among the variants and restore, restart, rebalance, rss. The worker
// processes run without the bench's GODEBUG=madvdontneed=0, as a worker
// runs; -worker-fetch-max-bytes and -worker-env change their settings to
// try a remedy. With -cpuprofile, the restore and raw consume get a CPU
// profile each, a restarted worker a CPU profile and an execution trace
// from its exec to its first commit, and the rss worker writes a heap
// profile at its largest live heap.
//
// Each variant copies -n records of a fresh input topic, produced
// beforehand and not timed, with its own group and topics; one worker per
// variant, so the comparison is loop against loop. The clock runs from the
// loop's start (group join included) until the group's committed offsets
// cover every input record; then the output is read back with
// read_committed, and a variant whose output misses a record, or (under
// exactly_once) repeats one, fails the run.
//
// The broker is an embedded kfake in this process unless -brokers names
// an external one. With the embedded broker, the broker and the loop share
// the CPUs; every variant pays that alike.
//
// # Noise
//
// On a small shared machine three things swamp a 10% difference, and the
// bench fights each: page faults on memory the runtime returned to the
// kernel between variants (it runs with GODEBUG=madvdontneed=0 and warms
// the heap up with one untimed variant first, see keepMemoryMapped); other
// processes' work (it waits for idle CPUs before each variant, and measures
// a variant again when others kept more than -max-others CPUs busy during
// it); and the rest (variants run interleaved, and with -runs > 1 it reports
// medians, and the per-run ratios of loops measured seconds apart).
//
//	go run ./cmd/bench [-n 1000000] [-partitions 8] [-value-size 100]
//	    [-runs 1] [-txn-records 1000] [-raw-records 20000]
//	    [-only raw_eos,sluice_eos]
//	    [-state=true] [-count-keys 100000] [-restore-records 1000000]
//	    [-restart-keys 100000,1000000] [-rebalance-keys 1000000]
//	    [-rss] [-rss-keys 5000000]
//	    [-worker-fetch-max-bytes 0] [-worker-env KEY=VALUE,...]
//	    [-brokers host:port] [-cpuprofile DIR] [-verify=true]
//	    [-warmup=true] [-quiet-wait 10s] [-max-others 0.25] [-retries 3]
//	    [-timeout 5m] [-v]
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// sessionTimeout is the group session and transaction timeout of every
// loop: sluice's default, given to the raw loop too.
const sessionTimeout = 10 * time.Second

// batchMaxBytes is the producer batch limit sluice derives from the
// broker's default max.message.bytes; the raw loop gets the same.
const batchMaxBytes = 1048588

type options struct {
	n          int64
	partitions int
	valueSize  int
	runs       int
	txnRecords int
	rawRecords int
	only       string
	brokers    string
	cpuprofile string
	verify     bool
	warmup     bool
	quiet      time.Duration
	maxOthers  float64
	retries    int
	timeout    time.Duration
	verbose    bool

	state          bool
	countKeys      int64
	restoreRecords int64
	restartKeys    string
	rss            bool
	rssKeys        int64
	rebalanceKeys  int64

	workerFetchMaxBytes int32
	workerEnvList       string
}

func main() {
	childMain() // a worker process of the restart and rss benchmarks
	keepMemoryMapped()
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Int64Var(&o.n, "n", 1_000_000, "records each variant copies")
	fs.IntVar(&o.partitions, "partitions", 8, "partitions of the input and output topics")
	fs.IntVar(&o.valueSize, "value-size", 100, "bytes per record value")
	fs.IntVar(&o.runs, "runs", 1, "times to run the set of variants; medians are reported")
	fs.IntVar(&o.txnRecords, "txn-records", 1000, "records per transaction of the small-transaction variants")
	fs.IntVar(&o.rawRecords, "raw-records", 20_000, "most records per transaction of raw_eos: sluice's default MaxBatchRecords; 0: whatever one PollFetches returns")
	fs.StringVar(&o.only, "only", "", "comma-separated variants to run (default: all)")
	fs.StringVar(&o.brokers, "brokers", "", "external seed brokers (default: an embedded broker in this process)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "directory for one CPU profile per measured variant and run (<variant>-r<run>.pprof)")
	fs.BoolVar(&o.verify, "verify", true, "read every output back and fail on a missing or (exactly_once) duplicated record")
	fs.BoolVar(&o.warmup, "warmup", true, "run the first variant once, untimed, before the first run")
	fs.DurationVar(&o.quiet, "quiet-wait", 10*time.Second, "before each variant, wait up to this long for other processes to leave the CPUs (nearly) idle")
	fs.Float64Var(&o.maxOthers, "max-others", 0.25, "measure a variant again when other processes kept more than this many CPUs busy meanwhile (0: never)")
	fs.IntVar(&o.retries, "retries", 3, "how many times -max-others may measure one variant again")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "longest one variant may take to copy its records")
	fs.BoolVar(&o.verbose, "v", false, "log the workers' info messages")
	fs.BoolVar(&o.state, "state", true, "also run the state benchmarks: sluice_eos_count, restore, restart")
	fs.Int64Var(&o.countKeys, "count-keys", 100_000, "distinct keys of the sluice_eos_count input")
	fs.Int64Var(&o.restoreRecords, "restore-records", 1_000_000, "changelog records the restore benchmark replays")
	fs.StringVar(&o.restartKeys, "restart-keys", "100000,1000000", "comma-separated store sizes (keys) at which the restart benchmark SIGKILLs a worker")
	fs.BoolVar(&o.rss, "rss", false, "also measure the peak RSS of a worker with -rss-keys keys in its store (minutes)")
	fs.Int64Var(&o.rssKeys, "rss-keys", 5_000_000, "keys in the store of the rss benchmark")
	fs.Int64Var(&o.rebalanceKeys, "rebalance-keys", 1_000_000, "keys in the store of the rebalance benchmark")
	fetchMax := fs.Int("worker-fetch-max-bytes", 0, "restart and rss: franz-go FetchMaxBytes of the worker processes (0: the worker's own setting)")
	fs.StringVar(&o.workerEnvList, "worker-env", "", "restart and rss: comma-separated KEY=VALUE added to the worker processes' environment (GOMEMLIMIT=..., GOGC=...)")
	fs.Parse(os.Args[1:])
	o.workerFetchMaxBytes = int32(*fetchMax)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// variant is one measured loop.
type variant struct {
	name string
	eos  bool // duplicates are a failure
	run  func(ctx context.Context, e env, t topics, p *probe) error

	state bool  // a state variant: run by default only with -state
	keys  int64 // distinct input keys; 0: one per record
	// check, when set, verifies the output instead of txntest.Verify.
	check func(ctx context.Context, e env, t topics, n int64) error
	// internal are the topics the loop creates, besides in, out and dlq.
	internal func(t topics) []string
}

// env is what every variant shares.
type env struct {
	brokers []string
	log     *slog.Logger
}

// topics names one variant's topics and group.
type topics struct {
	app     string // group id (and sluice app id)
	in, out string
}

func variants(o options) []variant {
	sluice := func(g txn.Guarantee, maxBatch int) func(context.Context, env, topics, *probe) error {
		return func(ctx context.Context, e env, t topics, p *probe) error {
			topo, err := passthrough.Build(t.app, t.in, t.out)
			if err != nil {
				return err
			}
			return runWorker(ctx, e, p, topo, g, maxBatch)
		}
	}
	raw := func(maxBatch int) func(context.Context, env, topics, *probe) error {
		return func(ctx context.Context, e env, t topics, p *probe) error {
			return rawLoop{
				brokers: e.brokers, group: t.app, in: t.in, out: t.out,
				maxBatch: maxBatch, batchMax: batchMaxBytes, log: e.log, hooks: p,
			}.run(ctx)
		}
	}
	small := strconv.Itoa(o.txnRecords)
	// Interleaved, so that a slow phase of a noisy machine does not fall
	// on one kind of loop only.
	return []variant{
		{name: "raw_eos", eos: true, run: raw(o.rawRecords)},
		{name: "sluice_eos", eos: true, run: sluice(txn.ExactlyOnce, 0)},
		{name: "sluice_alos", run: sluice(txn.AtLeastOnce, 0)},
		{name: "raw_eos_" + small, eos: true, run: raw(o.txnRecords)},
		{name: "sluice_eos_" + small, eos: true, run: sluice(txn.ExactlyOnce, o.txnRecords)},
		{name: "sluice_eos_fanout", eos: true, run: fanoutLoop(o.partitions), state: true, keys: o.countKeys, check: checkFanout,
			internal: func(t topics) []string { return []string{fanoutSecond(t)} }},
		{name: "sluice_eos_count", eos: true, run: countLoop, state: true, keys: o.countKeys,
			check: func(ctx context.Context, e env, t topics, n int64) error {
				return checkCounts(ctx, e.brokers, t.out, n, o.countKeys)
			},
			internal: func(t topics) []string { return []string{changelogOf(t.app)} }},
	}
}

// runWorker runs one sluice worker (instance "0") of topo under g, with
// at most maxBatch records per transaction (0: the default), until ctx is
// done.
func runWorker(ctx context.Context, e env, p *probe, topo topology.Topology, g txn.Guarantee, maxBatch int) error {
	w, err := txn.NewWorker(topo, txn.Config{
		Brokers:         e.brokers,
		Instance:        "0",
		Guarantee:       g,
		MaxBatchRecords: maxBatch,
		SessionTimeout:  sessionTimeout,
		Logger:          e.log,
		ClientOpts:      []kgo.Opt{kgo.WithHooks(p)},
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// ratio is a figure the project targets, or (target 0) one that explains
// another.
type ratio struct {
	num, den string
	target   float64
}

func ratios(txnRecords int) []ratio {
	small := strconv.Itoa(txnRecords)
	return []ratio{
		{"sluice_eos", "raw_eos", 0.90},
		{"sluice_eos", "sluice_alos", 0.90},
		{"sluice_eos_" + small, "raw_eos_" + small, 0.85},
		{"sluice_eos_count", "raw_eos", 0.60},
		// No targets: where the count's cost goes (fanout.go).
		{"sluice_eos_fanout", "raw_eos", 0},
		{"sluice_eos_count", "sluice_eos_fanout", 0},
	}
}

// result is one measurement.
type result struct {
	rate    float64       // records per second, start to all committed
	elapsed time.Duration // start to all committed
	startup time.Duration // start to the first fetched batch
	commits int64         // EndTxn or OffsetCommit responses
	fetched int64         // input records fetched; more than n: refetches
	faults  int64         // page faults of this process
	sys     float64       // CPUs this process kept busy in the kernel
	cpu     float64       // CPUs this process kept busy (loop, broker, bench)
	others  float64       // CPUs other processes kept busy; -1: unknown
	hung    bool          // the loop did not stop when cancelled
}

// stopTimeout is how long a loop may take to stop once cancelled.
const stopTimeout = 30 * time.Second

// quietCPUs is how many CPUs other processes may keep busy for the
// machine to count as quiet enough to start a measurement.
const quietCPUs = 0.2

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.n <= 0 || o.partitions <= 0 || o.runs <= 0 || o.txnRecords <= 0 || o.rawRecords < 0 {
		return errors.New("-n, -partitions, -runs and -txn-records must be positive, -raw-records not negative")
	}
	if o.countKeys <= 0 || o.restoreRecords <= 0 || o.rssKeys <= 0 || o.rebalanceKeys <= 0 {
		return errors.New("-count-keys, -restore-records, -rss-keys and -rebalance-keys must be positive")
	}
	restartKeys, err := parseKeys(o.restartKeys)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	all := variants(o)
	var chosen []variant
	benches := stateBenches{restore: o.state, restart: o.state, rebalance: o.state, rss: o.rss}
	if o.only == "" {
		for _, v := range all {
			if !v.state || o.state {
				chosen = append(chosen, v)
			}
		}
	} else {
		benches = stateBenches{}
		for _, name := range strings.Split(o.only, ",") {
			name = strings.TrimSpace(name)
			if benches.choose(name) {
				continue
			}
			i := slices.IndexFunc(all, func(v variant) bool { return v.name == name })
			if i < 0 {
				return fmt.Errorf("-only: unknown variant %q (have: %s, %s)", name, names(all), strings.Join(stateBenchNames, ", "))
			}
			chosen = append(chosen, all[i])
		}
	}

	brokerDesc := "external " + o.brokers
	var brokers []string
	if o.brokers == "" {
		cluster, addr, err := broker.Start(broker.Config{})
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = []string{addr}
		brokerDesc = "embedded kfake in this process (" + addr + ")"
	} else {
		brokers = strings.Split(o.brokers, ",")
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return err
		}
	}
	adminCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	e := env{brokers: brokers, log: log}

	fmt.Fprintf(stdout, "bench: n=%d partitions=%d value-size=%d runs=%d txn-records=%d raw-records=%d GOMAXPROCS=%d NumCPU=%d %s\n",
		o.n, o.partitions, o.valueSize, o.runs, o.txnRecords, o.rawRecords, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(stdout, "broker: %s; GODEBUG=%s\n", brokerDesc, os.Getenv("GODEBUG"))

	// A prefix unique to this invocation, so that an external broker's
	// leftovers from an earlier run never collide.
	prefix := "bench-" + strconv.FormatInt(time.Now().UnixNano()/1e6, 36)
	results := map[string][]result{}
	var sr stateResults
	defer sr.cleanup(adm)
	var hangs []string
	// Run 0 warms up what the first measured variant would otherwise pay
	// for alone: the heap's growth to its full size (see keepMemoryMapped),
	// the broker's first topics and groups.
	first := 1
	if o.warmup && len(chosen) > 0 {
		first = 0
		fmt.Fprintf(stderr, "run 0 is an untimed warm-up\n")
	}
	for r := first; r <= o.runs; r++ {
		ro, vs := o, chosen
		if r == 0 {
			ro.verify, ro.cpuprofile, vs = false, "", chosen[:1]
		}
		for _, v := range vs {
			var res result
			for attempt := 1; ; attempt++ {
				t := topics{app: fmt.Sprintf("%s-r%d-%s-a%d", prefix, r, v.name, attempt)}
				t.in, t.out = t.app+"-in", t.app+"-out"
				var err error
				res, err = measure(ctx, ro, e, adm, v, t, r, stderr)
				// Free the broker's memory (and an external broker's
				// disk) before the next variant, whatever happened.
				dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				del := []string{t.in, t.out, topology.DLQTopic(t.app)}
				if v.internal != nil {
					del = append(del, v.internal(t)...)
				}
				adm.DeleteTopics(dctx, del...)
				cancel()
				if err != nil {
					return fmt.Errorf("run %d, %s: %w", r, v.name, err)
				}
				fmt.Fprintf(stderr, "run %d: %-18s %9.0f rec/s  elapsed %v  startup %v  commits %d  fetched %d  cpu %.2f (sys %.2f)  faults %d  others %.2f\n",
					r, v.name, res.rate, res.elapsed.Round(time.Millisecond), res.startup.Round(time.Millisecond), res.commits, res.fetched, res.cpu, res.sys, res.faults, res.others)
				if res.hung {
					hangs = append(hangs, fmt.Sprintf("run %d: %s did not stop within %v of cancellation (goroutines on stderr)", r, v.name, stopTimeout))
				}
				if r == 0 || !noisy(o, res) || attempt > o.retries {
					break
				}
				fmt.Fprintf(stderr, "run %d: %s: other processes kept %.2f CPUs busy meanwhile (-max-others %.2f); measuring again\n", r, v.name, res.others, o.maxOthers)
			}
			if r > 0 {
				results[v.name] = append(results[v.name], res)
			}
		}
		if r > 0 && benches.restore {
			if err := sr.restoreRun(ctx, o, e, adm, prefix, r, stderr); err != nil {
				return fmt.Errorf("run %d, restore: %w", r, err)
			}
		}
	}
	if err := sr.once(ctx, o, e, adm, prefix, benches, restartKeys, stderr); err != nil {
		return err
	}
	if len(chosen) > 0 {
		report(stdout, o, chosen, results)
	}
	sr.report(stdout, o)
	var n, bad int
	for _, rs := range results {
		for _, r := range rs {
			n++
			if noisy(o, r) {
				bad++
			}
		}
	}
	if bad > 0 {
		fmt.Fprintf(stdout, "WARNING: %d of %d measurements ran while other processes kept more than %.2f CPUs busy, also after %d retries: their figures are low\n", bad, n, o.maxOthers, o.retries)
	}
	for _, h := range hangs {
		fmt.Fprintln(stdout, "WARNING:", h)
	}
	return sr.failed()
}

// measure runs one variant once: set up its topics and input (not
// timed), time the loop until every input record's offset is committed,
// stop it, and check its output.
func measure(ctx context.Context, o options, e env, adm *kadm.Client, v variant, t topics, runNo int, progress io.Writer) (result, error) {
	fmt.Fprintf(progress, "run %d: %-18s producing %d input records...\n", runNo, v.name, o.n)
	if err := broker.CreateTopics(ctx, e.brokers, int32(o.partitions), t.in, t.out); err != nil {
		return result{}, err
	}
	if err := txntest.Produce(ctx, e.brokers, t.in, 0, o.n, v.keys, o.valueSize); err != nil {
		return result{}, fmt.Errorf("producing the input: %w", err)
	}
	listed, err := adm.ListEndOffsets(ctx, t.in)
	if err != nil {
		return result{}, fmt.Errorf("listing the input's end offsets: %w", err)
	}
	ends := map[int32]int64{}
	var total int64
	listed.Each(func(l kadm.ListedOffset) {
		ends[l.Partition] = l.Offset
		total += l.Offset
	})
	if total != o.n {
		return result{}, fmt.Errorf("the input holds %d records, want %d", total, o.n)
	}

	// Start every variant from a collected heap (with the embedded broker
	// the previous variant's garbage is large) and, on a shared machine,
	// when other work leaves the CPUs alone.
	runtime.GC()
	if o.quiet > 0 {
		if load := waitQuiet(quietCPUs, o.quiet); load >= quietCPUs {
			fmt.Fprintf(progress, "run %d: %s: other processes still keep %.1f CPUs busy after %v; measuring anyway\n", runNo, v.name, load, o.quiet)
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(filepath.Join(o.cpuprofile, fmt.Sprintf("%s-r%d.pprof", v.name, runNo)))
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
	}
	p := newProbe(t.out, o.n)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	waitCtx, stopWait := context.WithTimeout(ctx, o.timeout)
	defer stopWait()
	errc := make(chan error, 1)
	before := sampleCPU()
	start := time.Now()
	go func() {
		errc <- v.run(loopCtx, e, t, p)
		stopWait() // a loop that returned early will not finish
	}()
	done, waitErr := p.waitCommitted(waitCtx, adm, t.app, t.in, ends)
	after := sampleCPU()
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	stopLoop()
	var loopErr error
	hung := false
	select {
	case loopErr = <-errc:
	case <-time.After(stopTimeout):
		// A stop that hangs is a bug of the loop: show where it hangs.
		// The figure stands (every record was committed before the
		// stop); the hung loop's goroutines are left behind.
		fmt.Fprintf(progress, "run %d: %s did not stop within %v of cancellation; goroutines:\n", runNo, v.name, stopTimeout)
		pprof.Lookup("goroutine").WriteTo(progress, 1)
		hung = true
	}
	if waitErr != nil {
		return result{}, errors.Join(waitErr, loopErr)
	}
	if loopErr != nil {
		return result{}, fmt.Errorf("loop failed after it finished: %w", loopErr)
	}
	res := result{
		elapsed: done.Sub(start),
		commits: p.commits.Load(),
		fetched: p.fetched.Load(),
		hung:    hung,
	}
	res.rate = float64(o.n) / res.elapsed.Seconds()
	res.cpu = (after.self - before.self).Seconds() / res.elapsed.Seconds()
	res.others = othersCPU(before, after, res.elapsed)
	res.faults = after.faults - before.faults
	res.sys = (after.sys - before.sys).Seconds() / res.elapsed.Seconds()
	if ff := p.firstFetch.Load(); ff != 0 {
		res.startup = time.Unix(0, ff).Sub(start)
	}

	if o.verify {
		vctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		if v.check != nil {
			if err := v.check(vctx, e, t, o.n); err != nil {
				return result{}, fmt.Errorf("verifying the output: %w", err)
			}
			return res, nil
		}
		rep, err := txntest.Verify(vctx, e.brokers, t.out, o.n)
		if err != nil {
			return result{}, fmt.Errorf("verifying the output: %w", err)
		}
		if rep.NumMissing > 0 || rep.Foreign > 0 || (v.eos && rep.Duplicates > 0) {
			return result{}, fmt.Errorf("wrong output: %v", rep)
		}
		if rep.Duplicates > 0 {
			fmt.Fprintf(progress, "run %d: %s output has %d duplicates (allowed at_least_once)\n", runNo, v.name, rep.Duplicates)
		}
	}
	return res, nil
}

// report prints the median figure of each variant, then the ratios.
func report(w io.Writer, o options, chosen []variant, results map[string][]result) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-18s %10s %9s %8s %8s %10s %5s %6s\n", "variant", "rec/s", "elapsed", "startup", "commits", "rec/commit", "cpu", "others")
	medians := map[string]float64{}
	for _, v := range chosen {
		rs := results[v.name]
		if len(rs) == 0 {
			continue
		}
		m := median(rs, func(r result) float64 { return r.rate })
		medians[v.name] = m
		el := time.Duration(median(rs, func(r result) float64 { return float64(r.elapsed) }))
		su := time.Duration(median(rs, func(r result) float64 { return float64(r.startup) }))
		cm := median(rs, func(r result) float64 { return float64(r.commits) })
		cpu := median(rs, func(r result) float64 { return r.cpu })
		others := median(rs, func(r result) float64 { return r.others })
		fmt.Fprintf(w, "%-18s %10.0f %9v %8v %8.0f %10.0f %5.2f %6.2f", v.name, m, el.Round(time.Millisecond), su.Round(time.Millisecond), cm, float64(o.n)/max(cm, 1), cpu, others)
		if len(rs) > 1 {
			lo := slices.MinFunc(rs, func(a, b result) int { return cmp.Compare(a.rate, b.rate) }).rate
			hi := slices.MaxFunc(rs, func(a, b result) int { return cmp.Compare(a.rate, b.rate) }).rate
			fmt.Fprintf(w, "   (min %.0f, max %.0f over %d runs)", lo, hi, len(rs))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "(rec/s: n / elapsed, from the loop's start to every input offset committed; startup: to the")
	fmt.Fprintln(w, " first fetched batch; commits: EndTxn or OffsetCommit responses; cpu: CPUs this process kept")
	fmt.Fprintln(w, " busy, embedded broker included; others: CPUs other processes kept busy meanwhile)")
	fmt.Fprintln(w)
	for _, r := range ratios(o.txnRecords) {
		num, ok1 := medians[r.num]
		den, ok2 := medians[r.den]
		if !ok1 || !ok2 {
			continue
		}
		q := num / den
		switch {
		case r.target == 0:
			fmt.Fprintf(w, "%-36s = %.2f (no target)", r.num+"/"+r.den, q)
		case q < r.target:
			fmt.Fprintf(w, "%-36s = %.2f (target >= %.2f) BELOW TARGET", r.num+"/"+r.den, q, r.target)
		default:
			fmt.Fprintf(w, "%-36s = %.2f (target >= %.2f) ok", r.num+"/"+r.den, q, r.target)
		}
		// The two loops of one run ran a few seconds apart, under about
		// the same conditions: their ratios show how steady the verdict is.
		if nr, dr := results[r.num], results[r.den]; len(nr) > 1 && len(nr) == len(dr) {
			per := make([]string, len(nr))
			for i := range nr {
				per[i] = fmt.Sprintf("%.2f", nr[i].rate/dr[i].rate)
			}
			fmt.Fprintf(w, "   per run: %s", strings.Join(per, " "))
		}
		fmt.Fprintln(w)
	}
}

// noisy reports whether other processes disturbed a measurement.
func noisy(o options, r result) bool {
	return o.maxOthers > 0 && r.others > o.maxOthers
}

func median(rs []result, f func(result) float64) float64 {
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

func names(vs []variant) string {
	var ns []string
	for _, v := range vs {
		ns = append(ns, v.name)
	}
	return strings.Join(ns, ", ")
}
