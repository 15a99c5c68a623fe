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
//	sluice_eos_dedup DedupByKey over input whose every key is new (n
//	                 distinct ids, each looked up, stored and changelogged),
//	                 exactly_once (dedup.go)
//	sluice_eos_wcount a tumbling 1-minute windowed count per key with
//	                 EmitOnClose, event time a millisecond a record
//	                 (wcount.go)
//
// (R is -raw-records, default 20,000 like sluice's MaxBatchRecords, so that
// both loops run transactions of the same size; T is -txn-records, default
// 1000) and prints each figure and the ratios the project targets.
//
// # State
//
// With -state (the default; -state=false runs the variants above without
// sluice_eos_count, sluice_eos_fanout and nothing else) it also measures, in the same run
// (state.go, count.go, restore.go, restart.go, rebalance.go; the worker
// processes they start: worker.go, seen from the bench through childproc.go):
//
//	restore  a worker on an empty state directory restores its 8 tasks
//	         from a changelog of -restore-records records (default
//	         1,000,000, written once, transactionally); records/s from the
//	         worker's "task restored" logs (sum of records / sum of took),
//	         against a raw read_committed consume of the same partitions
//	         with one plain client, each run; medians reported
//	restart  a worker process (this binary re-executed as a worker, see
//	         worker.go) fills its store to K keys, for each K of
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
// and, only with -bounded (minutes),
//
//	bounded  a worker process runs DedupByKey (span -bounded-dedup-span,
//	         default 1h) over -bounded-events events (default 10,000,000)
//	         whose timestamps advance evenly over -bounded-span of event
//	         time (default 10h), 1% of them repeats of recent ids and 0.1%
//	         out of order; its peak RSS (target <= 300 MB), its state
//	         directory's size on disk (largest and final), and the ids its
//	         stores keep at the end against one span's distinct ids
//	         (target <= 1.2 times); then the output is checked: every
//	         distinct id once (bounded.go).
//
// -only picks among the variants and restore, restart, rebalance, rss,
// bounded. The worker processes run without the bench's
// GODEBUG=madvdontneed=0, as a worker runs; -worker-fetch-max-bytes and
// -worker-env change their settings to try a remedy. With -cpuprofile,
// the restore and raw consume get a CPU profile each, a restarted worker
// a CPU profile and an execution trace from its exec to its first
// commit; the rss and bounded workers write a heap profile at their
// largest live heap (into -cpuprofile's directory, or the temporary one).
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
//	    [-bounded] [-bounded-events 10000000] [-bounded-span 10h]
//	    [-bounded-dedup-span 1h]
//	    [-worker-fetch-max-bytes 0] [-worker-env KEY=VALUE,...]
//	    [-brokers host:port] [-cpuprofile DIR] [-verify=true]
//	    [-warmup=true] [-quiet-wait 10s] [-max-others 0.25] [-retries 3]
//	    [-timeout 5m] [-v]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
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

	bounded          bool
	boundedEvents    int64
	boundedSpan      time.Duration
	boundedDedupSpan time.Duration

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
	fs.BoolVar(&o.bounded, "bounded", false, "also measure a dedup worker's state, RSS and disk over -bounded-events events (minutes)")
	fs.Int64Var(&o.boundedEvents, "bounded-events", 10_000_000, "events of the bounded benchmark")
	fs.DurationVar(&o.boundedSpan, "bounded-span", 10*time.Hour, "event time the bounded benchmark's events span")
	fs.DurationVar(&o.boundedDedupSpan, "bounded-dedup-span", time.Hour, "the dedup span of the bounded benchmark")
	fetchMax := fs.Int("worker-fetch-max-bytes", 0, "restart, rss and bounded: franz-go FetchMaxBytes of the worker processes (0: the worker's own setting)")
	fs.StringVar(&o.workerEnvList, "worker-env", "", "restart, rss and bounded: comma-separated KEY=VALUE added to the worker processes' environment (GOMEMLIMIT=..., GOGC=...)")
	fs.Parse(os.Args[1:])
	o.workerFetchMaxBytes = int32(*fetchMax)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.n <= 0 || o.partitions <= 0 || o.runs <= 0 || o.txnRecords <= 0 || o.rawRecords < 0 {
		return errors.New("-n, -partitions, -runs and -txn-records must be positive, -raw-records not negative")
	}
	if o.countKeys <= 0 || o.restoreRecords <= 0 || o.rssKeys <= 0 || o.rebalanceKeys <= 0 || o.boundedEvents <= 0 {
		return errors.New("-count-keys, -restore-records, -rss-keys, -rebalance-keys and -bounded-events must be positive")
	}
	if o.boundedSpan < time.Millisecond || o.boundedDedupSpan <= 0 || o.boundedDedupSpan%time.Millisecond != 0 {
		return errors.New("-bounded-span must be at least 1ms, -bounded-dedup-span a positive whole number of milliseconds")
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
	benches := stateBenches{restore: o.state, restart: o.state, rebalance: o.state, rss: o.rss, bounded: o.bounded}
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
