// Command chaos runs the four example apps as `runner run` worker
// processes on a `runner broker --data-dir` process, feeds them input,
// and for a while injects faults at times drawn from a seed: SIGKILLs of
// workers (restarted with the same instance id, sometimes with their
// state directory wiped or a state file corrupted), zombies (SIGSTOP past
// the session timeout, then SIGCONT), scaling 1 → 4 → 1, graceful broker
// restarts and broker SIGKILLs, and transactional-id hijacks, with busy
// processes competing for the CPU all along. Then it stops the faults,
// drains, reads every output back with read_committed readers (one with
// large fetches, one with fetches the broker must cut) and checks it
// against a recomputation from the input as the broker holds it, counts
// the outputs with librdkafka (kcat) too, and prints one figure line:
//
//	chaos: seed=S duration=D records=N kills=K ... duplicates=0 lost=0 mismatches=0 broker_anomalies=A
//
// It exits 1 on any violation, keeping the logs of every process; the
// same -seed draws the same schedule.
//
// Usage:
//
//	go run ./cmd/chaos [-duration 2m] [-seed N] [-rate 100] [-busy 2]
//	    [-runner bin/runner] [-logs DIR] [-session-timeout 6s] [-faults kill,zombie,...]
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// options are the command's flags.
type options struct {
	duration time.Duration
	seed     uint64
	rate     int
	busy     int
	workers  int
	runner   string
	logs     string
	session  time.Duration
	faults   string
	gap      time.Duration
	drain    time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	res, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !res.clean() {
		os.Exit(1)
	}
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long faults are injected (the drain and the check come after)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the fault schedule; 0 draws one (printed, to rerun a failing schedule)")
	fs.IntVar(&o.rate, "rate", 100, "input records a second, per app")
	fs.IntVar(&o.busy, "busy", 2, "busy processes competing for the CPU during the run")
	fs.IntVar(&o.workers, "workers", 3, "workers per app")
	fs.StringVar(&o.runner, "runner", "bin/runner", "the runner binary (make build)")
	fs.StringVar(&o.logs, "logs", "", "directory of the run's logs and state; default a new temporary one, removed after a clean run")
	fs.DurationVar(&o.session, "session-timeout", 6*time.Second, "the workers' session timeout (a zombie is stopped past it)")
	fs.StringVar(&o.faults, "faults", "", "comma-separated fault kinds to draw from (default all: "+faultNames()+")")
	fs.DurationVar(&o.gap, "gap", 3*time.Second, "mean time between two faults")
	fs.DurationVar(&o.drain, "drain", 5*time.Minute, "longest wait for the workers to consume all input after the faults")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 || o.duration <= 0 || o.rate <= 0 || o.workers <= 0 || o.busy < 0 || o.gap <= 0 {
		err := errors.New("chaos: unexpected arguments, or a non-positive -duration, -rate, -workers or -gap, or a negative -busy")
		fmt.Fprintln(stderr, err)
		return o, err
	}
	if o.seed == 0 {
		o.seed = rand.Uint64()
	}
	return o, nil
}

func faultNames() string {
	var names []string
	for _, f := range faults {
		names = append(names, f.name)
	}
	return strings.Join(names, ",")
}

// chaos is one run.
type chaos struct {
	o       options
	out     io.Writer
	rng     *rand.Rand
	started time.Time
	apps    []app
	broker  *brokerProc
	fleet   *fleet
	session time.Duration
	workers int
	counts  counts
	hijacks int // hijacker processes started (their state directories)
}

// result is what a run found.
type result struct {
	reports   []appReport
	records   int64 // input records read back, all apps
	anomalies int64 // the broker's: acknowledged input it does not hold
	crossDiff []string
	counts    counts
	exits     []string
	// corruptionExits are workers that stopped on damage the harness
	// made to their state, found in use (expected: they restore).
	corruptionExits int
}

func (r result) clean() bool {
	for _, rep := range r.reports {
		if !rep.clean() {
			return false
		}
	}
	return len(r.crossDiff) == 0 && r.counts.unfencedHijacks == 0 && len(r.exits) == 0
}

// run runs the suite once and prints its figure line.
func run(ctx context.Context, o options, out io.Writer) (res result, err error) {
	kinds, err := selectFaults(o.faults)
	if err != nil {
		return res, err
	}
	runner, err := filepath.Abs(o.runner)
	if err != nil {
		return res, err
	}
	if _, err := os.Stat(runner); err != nil {
		return res, fmt.Errorf("chaos: the runner binary: %w (make build makes bin/runner)", err)
	}
	dir := o.logs
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sluice-chaos-"); err != nil {
			return res, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	} else if left, err := os.ReadDir(dir); err != nil || len(left) > 0 {
		// A broker data directory or worker state from another run
		// would be taken as this run's.
		return res, cmp.Or(err, fmt.Errorf("chaos: -logs %s is not empty (another run's broker data and state); name a new directory or remove it", dir))
	}
	lg := &logs{dir: dir}
	defer lg.close()
	c := &chaos{o: o, out: out, rng: rand.New(rand.NewPCG(o.seed, o.seed^0x5eed)), started: time.Now(),
		apps: apps(), session: o.session, workers: o.workers}
	fmt.Fprintf(out, "chaos: seed=%d duration=%v rate=%d/s per app, %d workers per app, %d busy processes; logs in %s\n",
		o.seed, o.duration, o.rate, o.workers, o.busy, dir)
	defer func() {
		if err != nil || !res.clean() {
			fmt.Fprintf(out, "chaos: FAILED; the logs of every process are in %s; rerun this schedule with -seed %d\n", dir, o.seed)
		} else if o.logs == "" {
			os.RemoveAll(dir)
		}
	}()

	busy, err := startBusy(o.busy)
	if err != nil {
		return res, err
	}
	defer busy.stop()

	c.broker = &brokerProc{bin: runner, dataDir: filepath.Join(dir, "broker"), log: lg.open("broker")}
	if err := c.broker.start(); err != nil {
		return res, err
	}
	defer func() { _ = c.broker.p.term(time.Minute) }()
	brokers := []string{c.broker.addr}
	if err := c.createTopics(ctx, brokers); err != nil {
		return res, err
	}
	c.fleet = &fleet{bin: runner, broker: c.broker, dir: dir, session: o.session, logs: lg}
	defer c.fleet.stopAll()
	for _, a := range c.apps {
		for i := 1; i <= o.workers; i++ {
			if _, err := c.fleet.start(a, fmt.Sprintf("w%d", i)); err != nil {
				return res, err
			}
		}
	}
	before, err := c.inputCounts(ctx, brokers)
	if err != nil {
		return res, err
	}
	fs, err := c.startFeeders(ctx, brokers)
	if err != nil {
		return res, err
	}
	defer fs.close()

	if err := c.inject(ctx, kinds); err != nil {
		return res, err
	}
	if err := c.settle(ctx); err != nil {
		return res, err
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = fs.finish(fctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("chaos: finish the input: %w", err)
	}
	acked := fs.acked()
	failed, why := fs.failed()
	c.logf("faults over; input done (%d records acknowledged, %d given up on); draining", sum(acked), failed)
	for _, w := range why {
		c.logf("input given up on: %s", w)
	}
	if err := c.drain(ctx, brokers); err != nil {
		return res, err
	}
	if err := c.fleet.reap(); err != nil {
		return res, err
	}
	c.logf("drained; checking")
	res.counts = c.counts
	res.exits = c.fleet.exitLog
	res.corruptionExits = c.fleet.corruptionExits
	vctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, a := range c.apps {
		rep, err := a.verify(vctx, brokers)
		if err != nil {
			return res, fmt.Errorf("chaos: check %s: %w", a.name(), err)
		}
		res.reports = append(res.reports, rep)
		res.records += rep.input
		fmt.Fprintf(out, "chaos: %s\n", rep)
	}
	after, err := c.inputCounts(vctx, brokers)
	if err != nil {
		return res, err
	}
	for t, n := range after {
		if d := n - before[t] - acked[t]; d != 0 {
			res.anomalies += max(d, -d)
			fmt.Fprintf(out, "chaos: broker anomaly: %s holds %d records, %d before the feed and %d acknowledged since\n", t, n, before[t], acked[t])
		}
	}
	if res.crossDiff, err = crossCheck(vctx, brokers, res.reports); err != nil {
		return res, err
	}
	for _, d := range res.crossDiff {
		fmt.Fprintf(out, "chaos: cross-client: %s\n", d)
	}
	for _, e := range res.exits {
		fmt.Fprintf(out, "chaos: a worker exited on its own: %s\n", e)
	}
	fmt.Fprintln(out, res.figure(o))
	return res, nil
}

// figure is the run's one line.
func (r result) figure(o options) string {
	var dups, lost, mism int64
	for _, rep := range r.reports {
		dups += rep.duplicates
		lost += rep.lost
		mism += rep.mismatches
	}
	c := r.counts
	return fmt.Sprintf("chaos: seed=%d duration=%v records=%d kills=%d wipes=%d corruptions=%d zombies=%d rebalances=%d scalings=%d broker_restarts=%d broker_kills=%d hijacks=%d unfenced_hijacks=%d corruption_exits=%d worker_exits=%d cross_client_diffs=%d duplicates=%d lost=%d mismatches=%d broker_anomalies=%d",
		o.seed, o.duration, r.records, c.kills, c.wipes, c.corruptions, c.zombies, c.rebalances, c.scalings,
		c.brokerRestarts, c.brokerKills, c.hijacks, c.unfencedHijacks, r.corruptionExits, len(r.exits), len(r.crossDiff), dups, lost, mism, r.anomalies)
}

func selectFaults(list string) ([]fault, error) {
	if list == "" {
		return faults, nil
	}
	var kinds []fault
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, f := range faults {
			if f.name == name {
				kinds, found = append(kinds, f), true
			}
		}
		if !found {
			return nil, fmt.Errorf("chaos: unknown fault %q (one of %s)", name, faultNames())
		}
	}
	return kinds, nil
}

// createTopics creates every app's topics.
func (c *chaos) createTopics(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, a := range c.apps {
		for _, t := range a.topics() {
			resp, err := adm.CreateTopic(ctx, t.partitions, -1, t.configs, t.name)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				return fmt.Errorf("chaos: create %s: %w", t.name, err)
			}
		}
		if err := a.setup(ctx, cl); err != nil {
			return fmt.Errorf("chaos: set %s up: %w", a.name(), err)
		}
	}
	return nil
}

func (c *chaos) startFeeders(ctx context.Context, brokers []string) (feeders, error) {
	var fs feeders
	for _, a := range c.apps {
		f, err := newFeeder(brokers, a, c.o.rate)
		if err != nil {
			fs.close()
			return nil, err
		}
		f.run(ctx)
		fs = append(fs, f)
	}
	return fs, nil
}

// inject draws faults from kinds, a mean gap apart, for the run's
// duration: first each kind once, in an order drawn from the seed (so
// that a short run has them all), then by their weights. Between faults
// it restarts workers that exited on their own.
func (c *chaos) inject(ctx context.Context, kinds []fault) error {
	end := c.started.Add(c.o.duration)
	first := slices.Clone(kinds)
	c.rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	for time.Now().Before(end) && ctx.Err() == nil {
		gap := time.Duration(c.rng.ExpFloat64() * float64(c.o.gap))
		c.pause(ctx, min(gap, time.Until(end)))
		if !time.Now().Before(end) {
			break
		}
		if err := c.fleet.reap(); err != nil {
			return err
		}
		f := pick(c.rng, kinds)
		if len(first) > 0 {
			f, first = first[0], first[1:]
		}
		if err := f.inject(c, ctx); err != nil {
			return fmt.Errorf("chaos: %s: %w", f.name, err)
		}
	}
	return ctx.Err()
}

// settle brings the fleet back to its usual shape: every app's workers
// running, none stopped.
func (c *chaos) settle(ctx context.Context) error {
	if err := c.fleet.reap(); err != nil {
		return err
	}
	for _, a := range c.apps {
		ws := c.fleet.running(a)
		for _, w := range ws {
			if w.stopped {
				w.p.signal(sigCont)
				w.stopped = false
			}
		}
		for i := len(ws); i < c.workers; i++ {
			if _, err := c.fleet.start(a, fmt.Sprintf("w%d", i+1)); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// drain waits until every app's group has committed the end of every
// partition it consumes, restarting workers that exit meanwhile.
func (c *chaos) drain(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var left string
	ok := waitUntil(ctx, c.o.drain, func() bool {
		if err := c.fleet.reap(); err != nil {
			left = err.Error()
			return false
		}
		left = ""
		for _, a := range c.apps {
			if l := lagLeft(ctx, brokers, adm, a); l != "" {
				left = a.name() + ": " + l
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("chaos: not drained within %v: %s", c.o.drain, left)
	}
	return nil
}

// busyProcs are the processes that compete for the CPU.
type busyProcs []*exec.Cmd

func startBusy(n int) (busyProcs, error) {
	var bs busyProcs
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			bs.stop()
			return nil, err
		}
		bs = append(bs, cmd)
	}
	return bs, nil
}

func (bs busyProcs) stop() {
	for _, cmd := range bs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// inputCounts returns how many records each input topic holds: the sum
// of its partitions' end offsets (nothing is deleted or compacted away
// during a run).
func (c *chaos) inputCounts(ctx context.Context, brokers []string) (map[string]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var inputs []string
	for _, a := range c.apps {
		inputs = append(inputs, inputTopics(a)...)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, inputs...)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		m[o.Topic] += o.Offset
	})
	return m, errors.Join(errs...)
}

// inputTopics are a's topics that are not its outputs.
func inputTopics(a app) []string {
	outputs := map[string]bool{}
	for _, t := range a.outputs() {
		outputs[t] = true
	}
	var inputs []string
	for _, t := range a.topics() {
		if !outputs[t.name] {
			inputs = append(inputs, t.name)
		}
	}
	return inputs
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
