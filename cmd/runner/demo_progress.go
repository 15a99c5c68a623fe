package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// demoProgress tells on stderr what a demo is doing while it runs, so that
// stdout holds the report alone: a line for each step (topics, workers up,
// crash, restart, verification) and, once a second, a line of totals: the
// input the broker has acknowledged, and what the workers' own /metrics
// say they did (records processed, transactions committed and aborted,
// dead letters, late and duplicate drops, restores).
//
// The workers' counts are summed over their processes: the last scrape of a
// process that the demo SIGKILLs is kept (retire), so a restart does not
// take its work back. What a process did between that scrape and the kill
// is not counted, so the totals are a close lower bound; the report on
// stdout, which the demo's own readers compute, is what is verified.
//
// Its methods are safe for concurrent use.
type demoProgress struct {
	app   string
	out   io.Writer
	start time.Time
	total int64  // input records the demo sends
	what  string // what they are: "orders", "events", "records"

	in      atomic.Int64 // input records the broker acknowledged
	crashes atomic.Int64

	http *http.Client

	mu       sync.Mutex // guards workers and lastLine, serialises writes to out
	workers  map[string]*workerCounts
	lastLine string // the totals last printed

	stop     context.CancelFunc
	finished chan struct{}
}

// workerCounts are the counters of one worker instance.
type workerCounts struct {
	gen     int                // which process of the instance runs now
	addr    string             // its metrics address; "" until it says
	last    map[string]float64 // its last scrape, by metric name
	carried map[string]float64 // the last scrapes of its earlier processes
}

// demoCounters are the metrics a progress line sums: sluice's own, whose
// help text docs/operations.md gives.
var demoCounters = []string{
	"sluice_records_processed_total",
	"sluice_transactions_committed_total",
	"sluice_transactions_aborted_total",
	"sluice_dead_letters_total",
	"sluice_late_records_dropped_total",
	"sluice_duplicates_dropped_total",
	"sluice_restore_duration_seconds_count",
	"sluice_records_restored_total",
}

// newDemoProgress starts the once-a-second totals of the demo of app,
// which sends total input records of the kind what, on out. Call finish
// to stop them.
func newDemoProgress(out io.Writer, app, what string, total int64) *demoProgress {
	ctx, cancel := context.WithCancel(context.Background())
	p := &demoProgress{
		app: app, out: out, start: time.Now(), total: total, what: what,
		http:     &http.Client{Timeout: time.Second},
		workers:  map[string]*workerCounts{},
		stop:     cancel,
		finished: make(chan struct{}),
	}
	go p.tick(ctx)
	return p
}

// say prints one step of the demo.
func (p *demoProgress) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s %s\n", p.prefix(), fmt.Sprintf(format, args...))
}

// prefix starts every line: the app and the time since the demo started.
func (p *demoProgress) prefix() string {
	return fmt.Sprintf("[demo %s %5.1fs]", p.app, time.Since(p.start).Seconds())
}

// acked counts one input record the broker acknowledged.
func (p *demoProgress) acked() { p.in.Add(1) }

// started records that process gen of instance began; its metrics address
// comes later, through listening.
func (p *demoProgress) started(instance string) (gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[instance]
	if w == nil {
		w = &workerCounts{carried: map[string]float64{}}
		p.workers[instance] = w
	}
	w.gen++
	return w.gen
}

// listening records where process gen of instance serves its metrics.
func (p *demoProgress) listening(instance string, gen int, addr string) {
	p.mu.Lock()
	w := p.workers[instance]
	if w == nil || w.gen != gen {
		p.mu.Unlock()
		return
	}
	w.addr = addr
	p.mu.Unlock()
	p.say("%s serves http://%s/metrics", instance, addr)
}

// retire takes a last scrape of instance's process before the demo kills
// it and keeps its counts, so that its next process adds to them.
func (p *demoProgress) retire(instance string) {
	p.scrape(instance)
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[instance]
	if w == nil {
		return
	}
	for name, v := range w.last {
		w.carried[name] += v
	}
	w.gen++ // a scrape of the old process still under way must not land
	w.addr, w.last = "", nil
}

// crashed counts one crash the demo injected.
func (p *demoProgress) crashed() { p.crashes.Add(1) }

// tick prints the totals once a second, when they changed, until ctx ends.
func (p *demoProgress) tick(ctx context.Context) {
	defer close(p.finished)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.scrapeAll()
			p.line("", false)
		}
	}
}

// finish stops the once-a-second lines and prints the final totals, from
// a last scrape of every worker (call it while they still run). It can be
// called more than once; only the first prints.
func (p *demoProgress) finish() {
	select {
	case <-p.finished:
		return
	default:
	}
	p.stop()
	<-p.finished
	p.scrapeAll()
	p.line("done: ", true)
}

// line prints the totals, after lead: always, or only when they changed.
func (p *demoProgress) line(lead string, always bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sum := map[string]float64{}
	for _, w := range p.workers {
		for name, v := range w.carried {
			sum[name] += v
		}
		for name, v := range w.last {
			sum[name] += v
		}
	}
	n := func(name string) int64 { return int64(sum[name]) }
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d %s in | processed %d | transactions %d committed, %d aborted",
		p.in.Load(), p.total, p.what,
		n("sluice_records_processed_total"), n("sluice_transactions_committed_total"), n("sluice_transactions_aborted_total"))
	for _, extra := range []struct{ name, label string }{
		{"sluice_dead_letters_total", "dead-lettered"},
		{"sluice_duplicates_dropped_total", "duplicates dropped"},
		{"sluice_late_records_dropped_total", "late dropped"},
	} {
		if v := n(extra.name); v > 0 {
			fmt.Fprintf(&b, " | %s %d", extra.label, v)
		}
	}
	fmt.Fprintf(&b, " | crashes %d | restores %d (%d records)",
		p.crashes.Load(), n("sluice_restore_duration_seconds_count"), n("sluice_records_restored_total"))
	if !always && b.String() == p.lastLine {
		return
	}
	p.lastLine = b.String()
	fmt.Fprintf(p.out, "%s %s%s\n", p.prefix(), lead, p.lastLine)
}

// scrapeAll scrapes every worker that said where it listens.
func (p *demoProgress) scrapeAll() {
	p.mu.Lock()
	instances := make([]string, 0, len(p.workers))
	for name := range p.workers {
		instances = append(instances, name)
	}
	p.mu.Unlock()
	for _, name := range instances {
		p.scrape(name)
	}
}

// scrape reads instance's /metrics and keeps the demoCounters of it. A
// worker that does not answer (starting, stopping) keeps its last counts.
func (p *demoProgress) scrape(instance string) {
	p.mu.Lock()
	w := p.workers[instance]
	if w == nil || w.addr == "" {
		p.mu.Unlock()
		return
	}
	gen, addr := w.gen, w.addr
	p.mu.Unlock()

	resp, err := p.http.Get("http://" + addr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	counts, err := sumMetrics(resp.Body, demoCounters)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.gen == gen {
		w.last = counts
	}
}

// sumMetrics reads Prometheus' text exposition format and returns, for
// each of names, the sum of its samples over all label sets.
func sumMetrics(r io.Reader, names []string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sums := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 || !want[line[:end]] {
			continue
		}
		rest := line[end:]
		if rest[0] == '{' {
			rest = rest[strings.LastIndexByte(rest, '}')+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		sums[line[:end]] += v
	}
	return sums, sc.Err()
}

// print writes s, a whole line or more, between the demo's own lines.
func (p *demoProgress) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.out, s)
}

// waitCommitted waits until instance's running process has committed want
// transactions by its metrics, or for at most limit, and returns how many
// it has committed. It fails only when ctx ends.
func (p *demoProgress) waitCommitted(ctx context.Context, instance string, want int, limit time.Duration) (int, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		p.scrape(instance)
		p.mu.Lock()
		var n int
		if w := p.workers[instance]; w != nil {
			n = int(w.last["sluice_transactions_committed_total"])
		}
		p.mu.Unlock()
		if n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-deadline.C:
			return n, nil
		case <-poll.C:
		}
	}
}
