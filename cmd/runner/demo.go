package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/service"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var demoCommand = command{
	name:    "demo",
	summary: "run an app end to end on an embedded broker, with a crash, and verify the output",
	usage: `runner demo [APP] [--records N] [--workers N]
    Everything from one command on an embedded broker: creates topics,
    generates input (with deliberate duplicates and some malformed records),
    runs workers, injects crashes, then verifies the output with a
    read_committed reader and prints a report (records in/out, duplicates,
    missing, DLQ'd, throughput). Exit 0 only when the report is clean.
    APP defaults to passthrough. The workers are child processes running
    "runner run", so the crash is a real SIGKILL: one worker is killed
    mid-run and restarted with the same --instance.
    Progress goes to stderr: each step, and once a second the input sent
    so far and what the workers' /metrics say (records processed,
    transactions committed and aborted, dead letters, drops, crashes,
    restores). The report alone goes to stdout.

runner demo outbox [--records N] [--workers N]
    The outbox relay and the Postgres sink end to end, with the dedup and
    the enrich apps between them, on a throwaway Postgres (initdb into a
    temporary directory; Debian's postgresql package, see "make
    postgres") and an embedded broker. Writers commit N orders (default
    20000) into a table orders, each transaction with an outbox row per
    order's event (some events written twice, some transactions rolled
    back), and changes of a table customers (updates, a delete, a late
    insert) with an outbox row each; "runner relay postgres" moves the
    outbox into the topics order-events and customers; --workers workers
    of the dedup app drop the repeated events into orders; as many of the
    enrich app join each order with its customer into orders-enriched;
    "runner sink postgres enrich" writes them into the table
    orders_enriched. Meanwhile the relay and the sink are SIGKILLed and
    restarted 3 times each, and a worker of each app once. Then SQL
    checks that each committed order is in orders_enriched exactly once
    with a value its customer had, no rolled-back one is, and the counts
    and sums of amounts, overall and per customer, equal the orders
    table's and the plan's; the topics in between are read with
    read_committed.
`,
	run: runDemo,
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "passthrough"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	records := fs.Int64("records", 200_000, "input records to generate")
	nworkers := fs.Int("workers", 3, "workers to run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("runner: demo: unexpected arguments %q", fs.Args())
	}
	if name == "outbox" {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "records" })
		if !set {
			*records = outboxDemoOrders
		}
		return demoOutbox(ctx, stdout, stderr, *records, *nworkers)
	}
	if _, ok := examples.Lookup(name); !ok {
		return usageErrorf("runner: demo: unknown app %q (one of: %s; or outbox)", name, appNames())
	}
	switch name {
	case "enrich":
		return demoEnrich(ctx, stdout, stderr, *records, *nworkers)
	case "dedup":
		return demoDedup(ctx, stdout, stderr, *records, *nworkers)
	case "revenue":
		return demoRevenue(ctx, stdout, stderr, *records, *nworkers)
	case "passthrough":
	default:
		return fmt.Errorf("runner: demo %s: not available yet; try runner demo passthrough, enrich, dedup or revenue", name)
	}
	return demoPassthrough(ctx, stdout, stderr, *records, *nworkers)
}

// demoPassthrough runs the passthrough app with nworkers child workers on
// an in-process broker, SIGKILLs one of them halfway and restarts it, and
// verifies every input record reached the output exactly once.
func demoPassthrough(ctx context.Context, stdout, stderr io.Writer, n int64, nworkers int) error {
	rig, err := startDemo(ctx, newDemoProgress(stderr, "passthrough", "records", n), []string{"in", "out"}, 8, nworkers,
		"passthrough", "--input", "in", "--output", "out")
	if err != nil {
		return err
	}
	defer rig.close()
	start := time.Now()
	if err := rig.feed(ctx, n, func(from, to int64) error { return produceDemo(ctx, rig.brokers, rig.progress, from, to) }); err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rig.progress.say("reading out with read_committed to verify it")
	rep, err := txntest.Verify(vctx, rig.brokers, "out", n)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := rig.ws.failed(); err != nil {
		return err
	}
	rig.progress.finish()
	fmt.Fprintf(stdout, `demo report (passthrough, %d workers, 1 SIGKILL + restart)
  records in:   %d
  records out:  %d
  distinct:     %d
  duplicates:   %d
  missing:      %d
  DLQ'd:        0 (passthrough copies bytes; malformed records pass through)
  throughput:   %.0f records/s end to end (%.1fs)
`, nworkers, n, rep.Records, rep.Distinct, rep.Duplicates, rep.NumMissing, float64(n)/elapsed.Seconds(), elapsed.Seconds())
	if !rep.Clean() {
		return fmt.Errorf("runner: demo: output is not exactly once: %s", rep)
	}
	fmt.Fprintln(stdout, "demo: clean: every record exactly once")
	return nil
}

// demoRig is what a demo runs on: an embedded broker with the app's
// topics, a client to produce with, the app's workers, and the progress
// they make. close stops them all.
type demoRig struct {
	brokers  []string
	cl       *kgo.Client
	ws       *demoWorkers   // the app's workers w1..wn; nil when started without an app
	sets     []*demoWorkers // ws and those of addWorkers
	progress *demoProgress
	close    func()
}

// addWorkers starts n more workers, named prefix1..prefixn, of app (with
// its flags) on the rig's broker; the rig's close stops them.
func (r *demoRig) addWorkers(prefix string, n int, app ...string) (*demoWorkers, error) {
	ws, err := startDemoWorkers(r.brokers[0], r.progress, prefix, n, app...)
	if err != nil {
		return nil, err
	}
	r.sets = append(r.sets, ws)
	return ws, nil
}

// startDemo starts a broker with topics of partitions partitions each, a
// client, and nworkers workers of app (with its flags). p tells what
// happens; the rig's close finishes it.
func startDemo(ctx context.Context, p *demoProgress, topics []string, partitions int32, nworkers int, app ...string) (*demoRig, error) {
	return startDemoWith(ctx, p, topics, nil, partitions, nworkers, nil, app...)
}

// startDemoWith is startDemo with topic configs (by topic name; a topic
// without any gets the broker's defaults) and prepare, when not nil,
// which runs once the topics exist and before the workers start: input
// the workers must find there at their start. With no app it starts no
// workers (addWorkers does).
func startDemoWith(ctx context.Context, p *demoProgress, topics []string, configs map[string]map[string]*string, partitions int32,
	nworkers int, prepare func(*kgo.Client) error, app ...string,
) (*demoRig, error) {
	cluster, addr, err := broker.Start(broker.Config{})
	if err != nil {
		p.finish()
		return nil, err
	}
	r := &demoRig{brokers: []string{addr}, progress: p}
	fail := func(err error) (*demoRig, error) {
		if r.cl != nil {
			r.cl.Close()
		}
		cluster.Close()
		p.finish()
		return nil, err
	}
	if r.cl, err = kgo.NewClient(kgo.SeedBrokers(addr)); err != nil {
		return fail(err)
	}
	adm := kadm.NewClient(r.cl)
	for _, topic := range topics {
		resp, err := adm.CreateTopic(ctx, partitions, -1, configs[topic], topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fail(fmt.Errorf("runner: demo: create topic %s: %w", topic, err))
		}
	}
	p.say("embedded broker on %s; topics %s (%d partitions each)", addr, strings.Join(topics, ", "), partitions)
	if prepare != nil {
		if err := prepare(r.cl); err != nil {
			return fail(err)
		}
	}
	r.close = func() {
		p.finish()
		for _, ws := range r.sets {
			ws.stopAll()
		}
		r.cl.Close()
		cluster.Close()
	}
	if len(app) > 0 {
		if r.ws, err = r.addWorkers("w", nworkers, app...); err != nil {
			return fail(err)
		}
	}
	return r, nil
}

// feed produces input [0, n) with produce, SIGKILLing a worker and
// restarting it halfway, once it has committed some of the first half.
func (r *demoRig) feed(ctx context.Context, n int64, produce func(from, to int64) error) error {
	p := r.progress
	p.say("producing %s [0, %d)", p.what, n/2)
	if err := produce(0, n/2); err != nil {
		return err
	}
	if err := r.ws.crashOne(ctx); err != nil {
		return err
	}
	p.say("producing %s [%d, %d)", p.what, n/2, n)
	return produce(n/2, n)
}

// produceDemo writes sequence numbers [from, to) to "in". Every 50th
// record repeats the key and body of the one before (a duplicate event with
// its own sequence number), and every 97th ends in bytes that are not valid
// UTF-8 or JSON: passthrough must copy both exactly. p counts what the
// broker acknowledged.
func produceDemo(ctx context.Context, brokers []string, p *demoProgress, from, to int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var firstErr error
	promise := func(_ *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			p.acked()
		}
	}
	for seq := from; seq < to; seq++ {
		keySeq := seq
		if seq%50 == 0 && seq > 0 {
			keySeq = seq - 1
		}
		v := txntest.SeqValue(seq, 100)
		if seq%97 == 0 {
			copy(v[len(v)-6:], "\xff{\x00not")
		}
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", keySeq%10_000)), Value: v}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("runner: demo: produce input: %w", firstErr)
	}
	return nil
}

// startDemoWorkers starts n child workers prefix1..prefixn of app (with
// its flags), each with its own state directory and its metrics on a port
// of its own, which p scrapes; stopAll stops them and removes the
// directories.
func startDemoWorkers(addr string, p *demoProgress, prefix string, n int, app ...string) (*demoWorkers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("runner: demo: find own executable: %w", err)
	}
	stateDir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return nil, err
	}
	ws := &demoWorkers{bin: self, addr: addr, progress: p, stateDir: stateDir, app: app, prefix: prefix, n: n}
	for i := 1; i <= n; i++ {
		if err := ws.start(fmt.Sprintf("%s%d", prefix, i)); err != nil {
			ws.stopAll()
			return nil, err
		}
	}
	p.say("%d workers started: runner run %s", n, strings.Join(app, " "))
	return ws, nil
}

// crashOne SIGKILLs worker w2 (w1 when alone; the prefix is the set's)
// and restarts it with the same instance id. It waits first, up to crashWait, until the victim has
// committed a transaction, so that the crash interrupts work and the
// restarted worker has state to restore.
func (d *demoWorkers) crashOne(ctx context.Context) error {
	victim := fmt.Sprintf("%s%d", d.prefix, min(2, d.n))
	p := d.progress
	if n, err := p.waitCommitted(ctx, victim, crashAfter, crashWait); err != nil {
		return err
	} else if n < crashAfter {
		p.say("%s committed %d transactions in %v, not %d: SIGKILL anyway", victim, n, crashWait, crashAfter)
	}
	p.say("SIGKILL %s", victim)
	if err := d.kill(victim); err != nil {
		return err
	}
	d.progress.crashed()
	if err := d.start(victim); err != nil {
		return err
	}
	d.progress.say("%s restarted with the same instance id", victim)
	return nil
}

// What crashOne waits for before it kills: a worker that has committed
// this many transactions is in the middle of its work; one that has not
// within crashWait (no partition of its own, say) is killed all the same.
const (
	crashAfter = 1
	crashWait  = 10 * time.Second
)

// demoWorkers are child `runner run APP` processes.
type demoWorkers struct {
	bin, addr string
	app       []string // APP and its flags
	prefix    string   // of the instance ids: prefix1, prefix2, ...
	n         int      // workers started at first
	stateDir  string
	progress  *demoProgress // where the workers' progress and warnings go

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	done  map[string]chan error
}

func (d *demoWorkers) start(instance string) error {
	args := append([]string{"run"}, d.app...)
	args = append(args, "--brokers", d.addr, "--instance", instance, "--metrics-addr", "127.0.0.1:0", "--session-timeout", "6s",
		"--state-dir", filepath.Join(d.stateDir, instance))
	cmd := exec.Command(d.bin, args...)
	cmd.Env = os.Environ()
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("runner: demo: start worker %s: %w", instance, err)
	}
	go d.relay(instance, d.progress.started(instance), out)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.procs == nil {
		d.procs, d.done = map[string]*exec.Cmd{}, map[string]chan error{}
	}
	d.procs[instance], d.done[instance] = cmd, done
	return nil
}

// relay reads the log of process gen of a worker: it tells the demo's
// progress where the process serves its metrics, and copies its warnings
// and errors to the demo's stderr.
func (d *demoWorkers) relay(instance string, gen int, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR"):
			d.progress.print(fmt.Sprintf("[%s] %s\n", instance, line))
		case strings.Contains(line, `msg="`+service.ServingMessage+`"`):
			if m := logAddr.FindStringSubmatch(line); m != nil {
				d.progress.listening(instance, gen, m[1])
			}
		}
	}
}

// logAddr finds the address in the worker's text log line that says where
// it serves its metrics.
var logAddr = regexp.MustCompile(` addr=(\S+)`)

// kill takes a last scrape of a worker's metrics, SIGKILLs it and waits
// for it to die.
func (d *demoWorkers) kill(instance string) error {
	d.progress.retire(instance)
	d.mu.Lock()
	cmd, done := d.procs[instance], d.done[instance]
	delete(d.procs, instance)
	delete(d.done, instance)
	d.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("runner: demo: kill %s: %w", instance, err)
	}
	<-done
	return nil
}

// failed returns an error if a worker has exited on its own.
func (d *demoWorkers) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, done := range d.done {
		select {
		case err := <-done:
			return fmt.Errorf("runner: demo: worker %s exited: %v", name, err)
		default:
		}
	}
	return nil
}

// stopAll sends SIGTERM to every worker and waits for them.
func (d *demoWorkers) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, cmd := range d.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done[name]:
			if err != nil {
				d.progress.say("worker %s stopped: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	clear(d.procs)
	os.RemoveAll(d.stateDir)
}
