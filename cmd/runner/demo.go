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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
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
	if _, ok := examples.Lookup(name); !ok {
		return usageErrorf("runner: demo: unknown app %q (one of: %s)", name, appNames())
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
	cluster, addr, err := broker.Start(broker.Config{})
	if err != nil {
		return err
	}
	defer cluster.Close()
	brokers := []string{addr}
	fmt.Fprintf(stdout, "demo: embedded broker on %s\n", addr)
	if err := broker.CreateTopics(ctx, brokers, 8, "in", "out"); err != nil {
		return err
	}
	ws, err := startDemoWorkers(addr, stderr, nworkers, "passthrough", "--input", "in", "--output", "out")
	if err != nil {
		return err
	}
	defer ws.stopAll()

	start := time.Now()
	half := n / 2
	if err := produceDemo(ctx, brokers, 0, half); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: %d records in\n", half)
	if err := ws.crashOne(stdout); err != nil {
		return err
	}
	if err := produceDemo(ctx, brokers, half, n); err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rep, err := txntest.Verify(vctx, brokers, "out", n)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := ws.failed(); err != nil {
		return err
	}
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
// topics, a client to produce with, and the app's workers. close stops
// all three.
type demoRig struct {
	brokers []string
	cl      *kgo.Client
	ws      *demoWorkers
	close   func()
}

// startDemo starts a broker with topics of partitions partitions each, a
// client, and nworkers workers of app (with its flags).
func startDemo(ctx context.Context, stdout, stderr io.Writer, topics []string, partitions int32, nworkers int, app ...string) (*demoRig, error) {
	cluster, addr, err := broker.Start(broker.Config{})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "demo: embedded broker on %s\n", addr)
	r := &demoRig{brokers: []string{addr}}
	fail := func(err error) (*demoRig, error) {
		if r.cl != nil {
			r.cl.Close()
		}
		cluster.Close()
		return nil, err
	}
	if err := broker.CreateTopics(ctx, r.brokers, partitions, topics...); err != nil {
		return fail(err)
	}
	if r.cl, err = kgo.NewClient(kgo.SeedBrokers(addr)); err != nil {
		return fail(err)
	}
	if r.ws, err = startDemoWorkers(addr, stderr, nworkers, app...); err != nil {
		return fail(err)
	}
	r.close = func() {
		r.ws.stopAll()
		r.cl.Close()
		cluster.Close()
	}
	return r, nil
}

// feed produces records [0, n) with produce, SIGKILLing a worker and
// restarting it halfway.
func (r *demoRig) feed(stdout io.Writer, n int64, what string, produce func(from, to int64) error) error {
	if err := produce(0, n/2); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: %d %s in\n", n/2, what)
	if err := r.ws.crashOne(stdout); err != nil {
		return err
	}
	return produce(n/2, n)
}

// produceDemo writes sequence numbers [from, to) to "in". Every 50th
// record repeats the key and body of the one before (a duplicate event with
// its own sequence number), and every 97th ends in bytes that are not valid
// UTF-8 or JSON: passthrough must copy both exactly.
func produceDemo(ctx context.Context, brokers []string, from, to int64) error {
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

// startDemoWorkers starts n child workers w1..wn of app (with its flags),
// each with its own state directory; stopAll stops them and removes it.
func startDemoWorkers(addr string, log io.Writer, n int, app ...string) (*demoWorkers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("runner: demo: find own executable: %w", err)
	}
	stateDir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return nil, err
	}
	ws := &demoWorkers{bin: self, addr: addr, log: log, stateDir: stateDir, app: app, n: n}
	for i := 1; i <= n; i++ {
		if err := ws.start(fmt.Sprintf("w%d", i)); err != nil {
			ws.stopAll()
			return nil, err
		}
	}
	return ws, nil
}

// crashOne SIGKILLs worker w2 (w1 when alone) and restarts it with the same
// instance id.
func (d *demoWorkers) crashOne(stdout io.Writer) error {
	victim := fmt.Sprintf("w%d", min(2, d.n))
	fmt.Fprintf(stdout, "demo: SIGKILL %s\n", victim)
	if err := d.kill(victim); err != nil {
		return err
	}
	if err := d.start(victim); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: %s restarted with the same instance id\n", victim)
	return nil
}

// demoWorkers are child `runner run APP` processes.
type demoWorkers struct {
	bin, addr string
	app       []string // APP and its flags
	n         int      // workers started at first
	stateDir  string
	log       io.Writer

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	done  map[string]chan error
}

func (d *demoWorkers) start(instance string) error {
	args := append([]string{"run"}, d.app...)
	args = append(args, "--brokers", d.addr, "--instance", instance, "--metrics-addr", "", "--session-timeout", "6s",
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
	go d.relay(instance, out)
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

// relay copies a worker's warnings and errors to the demo's log.
func (d *demoWorkers) relay(instance string, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			fmt.Fprintf(d.log, "[%s] %s\n", instance, line)
		}
	}
}

// kill SIGKILLs a worker and waits for it to die.
func (d *demoWorkers) kill(instance string) error {
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
				fmt.Fprintf(d.log, "demo: worker %s stopped: %v\n", name, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	clear(d.procs)
	os.RemoveAll(d.stateDir)
}
