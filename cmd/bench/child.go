package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/txntest/child"
)

// childEnv, when set in the environment, makes the bench binary a worker
// process instead: it runs the count topology (countTopology) with the
// configuration the variable holds (JSON, childConfig) until SIGTERM, and
// reports what happens as lines on stdout:
//
//	<event> <unix nanoseconds> [key=value ...]
//
// The restart and rss benchmarks start it, SIGKILL it, restart it and
// read its memory from /proc. It is not a flag: the bench's flags stay
// those of the bench.
const childEnv = "SLUICE_BENCH_WORKER"

type childConfig struct {
	Brokers  []string `json:"brokers"`
	App      string   `json:"app"`
	In       string   `json:"in"`
	Out      string   `json:"out"`
	StateDir string   `json:"state_dir"`
	Instance string   `json:"instance"`
	// MemEvery: report the process's memory this often; 0: never.
	MemEvery time.Duration `json:"mem_every,omitempty"`
	// HeapProfile: write the heap profile here whenever the live heap
	// reaches a new high (10% above the last one written).
	HeapProfile string `json:"heap_profile,omitempty"`
	// CPUProfile: profile the process from its start to its first commit.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// FetchMaxBytes, when positive, overrides the FetchMaxBytes of the
	// worker's clients (Config.ClientOpts come last).
	FetchMaxBytes int32 `json:"fetch_max_bytes,omitempty"`
	// Trace: an execution trace from the start to the first commit (off-CPU
	// time: I/O, scheduling, waits).
	Trace string `json:"trace,omitempty"`
}

// childMain runs the worker process and exits when childEnv is set; it
// returns otherwise.
func childMain() {
	raw, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	start := time.Now()
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: %s: %v\n", childEnv, err)
		os.Exit(2)
	}
	os.Exit(runChild(cfg, start))
}

// events writes event lines to stdout.
type events struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *events) emit(at time.Time, name string, kv ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", name, at.UnixNano())
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	b.WriteByte('\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	io.WriteString(e.w, b.String())
}

func runChild(cfg childConfig, start time.Time) int {
	ev := &events{w: os.Stdout}
	ev.emit(start, "start", "pid", os.Getpid())
	stopCPU := func() {}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			stopCPU = sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	defer stopCPU()
	stopTrace := func() {}
	if cfg.Trace != "" {
		f, err := os.Create(cfg.Trace)
		if err == nil && trace.Start(f) == nil {
			stopTrace = sync.OnceFunc(func() { trace.Stop(); f.Close() })
		}
	}
	defer stopTrace()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	var committed atomic.Bool
	h := &restoreCapture{
		inner: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}),
		level: slog.LevelDebug,
		on: func(at time.Time, msg string, a map[string]slog.Value) {
			switch msg {
			case "transaction committed":
				ev.emit(at, "commit", "records", intOf(a["records"]))
				if committed.CompareAndSwap(false, true) {
					stopCPU()
					stopTrace()
				}
			case "task restored":
				ev.emit(at, "restored", "task", a["task"].String(), "records", intOf(a["records"]), "took_ns", int64(durOf(a["took"])))
			default:
				ev.emit(at, "log", "msg", strconv.Quote(msg))
			}
		},
	}
	hooks := &childHooks{ev: ev, committed: &committed}
	opts := []kgo.Opt{kgo.WithHooks(hooks)}
	if cfg.FetchMaxBytes > 0 {
		opts = append(opts, kgo.FetchMaxBytes(cfg.FetchMaxBytes))
	}
	if cfg.MemEvery > 0 {
		go reportMem(ctx, ev, cfg.MemEvery, cfg.HeapProfile)
	}
	w, err := newCountWorker(cfg.Brokers, topics{app: cfg.App, in: cfg.In, out: cfg.Out}, cfg.Instance, cfg.StateDir, slog.New(h), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		return 1
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		return 1
	}
	ev.emit(time.Now(), "stopped")
	return 0
}

func intOf(v slog.Value) int64 {
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return int64(v.Uint64())
	}
	n, _ := strconv.ParseInt(v.String(), 10, 64)
	return n
}

func durOf(v slog.Value) time.Duration {
	if v.Kind() == slog.KindDuration {
		return v.Duration()
	}
	d, _ := time.ParseDuration(v.String())
	return d
}

// childHooks reports the worker's first fetch, and the responses that
// bring a restarted worker back (producer id, group, offsets,
// transaction) until its first commit.
type childHooks struct {
	ev        *events
	committed *atomic.Bool
	fetched   atomic.Bool
	rpcs      atomic.Int32
}

var (
	_ kgo.HookFetchBatchRead = (*childHooks)(nil)
	_ kgo.HookBrokerRead     = (*childHooks)(nil)
)

func (h *childHooks) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, partition int32, m kgo.FetchBatchMetrics) {
	if h.fetched.CompareAndSwap(false, true) {
		h.ev.emit(time.Now(), "fetch", "topic", topic, "partition", partition, "records", m.NumRecords)
	}
}

func (h *childHooks) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if h.committed.Load() {
		return
	}
	switch kmsg.Key(key) {
	case kmsg.InitProducerID, kmsg.FindCoordinator, kmsg.JoinGroup, kmsg.SyncGroup, kmsg.OffsetFetch,
		kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.TxnOffsetCommit, kmsg.EndTxn, kmsg.ListOffsets:
	default:
		return
	}
	if h.rpcs.Add(1) > 200 {
		return
	}
	kv := []any{"name", kmsg.NameForKey(key)}
	if err != nil {
		kv = append(kv, "err", strconv.Quote(err.Error()))
	}
	h.ev.emit(time.Now(), "rpc", kv...)
}

// memSample is the memory of the worker process at one moment.
type memSample struct {
	at          time.Time
	rss, hwm    int64 // VmRSS, VmHWM
	goTotal     int64 // all memory the Go runtime mapped
	goReleased  int64 // of which returned to the OS
	heapObjects int64 // live and not yet swept heap objects
	heapGoal    int64
}

// goResident is what the Go runtime holds and has not released; RSS
// minus it is, roughly, memory allocated outside Go (cgo: Pebble's block
// cache and memtables).
func (m memSample) goResident() int64 { return m.goTotal - m.goReleased }

func reportMem(ctx context.Context, ev *events, every time.Duration, heapProfile string) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/goal:bytes"},
	}
	var written int64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		st := procStatus(os.Getpid())
		heap := int64(samples[2].Value.Uint64())
		ev.emit(time.Now(), "mem", "rss", st["VmRSS"], "hwm", st["VmHWM"],
			"go_total", samples[0].Value.Uint64(), "go_released", samples[1].Value.Uint64(),
			"heap_objects", heap, "heap_goal", samples[3].Value.Uint64())
		if heapProfile != "" && heap > written+written/10 {
			if f, err := os.Create(heapProfile); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				written = heap
			}
		}
	}
}

// procStatus returns the memory fields of /proc/<pid>/status, in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "Vm") && !strings.HasPrefix(k, "Rss") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n << 10
			}
		}
	}
	return out
}

// childProc is a worker process seen from the bench: what it reported on
// standard output, parsed into its state.
type childProc struct {
	*child.Process

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
	st      childState
}

// childState is what the process reported.
type childState struct {
	started     time.Time // entered main
	firstFetch  time.Time
	firstCommit time.Time
	firstTxn    int64 // records of the first committed transaction
	commits     int64
	committed   int64 // input records of committed transactions
	restored    []restoredTask
	early       []string // log messages and responses before the first commit
	mem         memSample
	memPeak     memSample // the report with the largest RSS
	// commitsAt, revokes and rebalanceAborts are when the process
	// committed, had partitions revoked, and had a transaction aborted
	// by a rebalance (the rebalance benchmark).
	commitsAt       []time.Time
	revokes         []time.Time
	rebalanceAborts []time.Time
}

// startChild starts a worker process; its stderr goes to stderr, each
// line prefixed with the label.
func startChild(cfg childConfig, extraEnv []string, label string, stderr io.Writer) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench's own executable: %w", err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(childEnviron(), extraEnv...), childEnv+"="+string(raw))
	c := &childProc{changed: make(chan struct{})}
	c.Process, err = child.Start(cmd, child.Options{
		Name:   "worker " + label,
		Stderr: &prefixWriter{w: stderr, prefix: "worker " + label + ": "},
		OnLine: func(l child.Line) { c.event(l.Text) },
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// childEnviron is the bench's environment without the GODEBUG setting
// keepMemoryMapped adds: the worker returns memory to the OS as any Go
// program does by default, so that its RSS is a worker's.
func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			var keep []string
			for _, s := range strings.Split(v, ",") {
				if s != "madvdontneed=0" && s != "" {
					keep = append(keep, s)
				}
			}
			if len(keep) > 0 {
				env = append(env, "GODEBUG="+strings.Join(keep, ","))
			}
			continue
		}
		if !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *childProc) event(line string) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return
	}
	at := time.Unix(0, ns)
	kv := map[string]string{}
	for _, s := range f[2:] {
		if k, v, ok := strings.Cut(s, "="); ok {
			kv[k] = v
		}
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(kv[k], 10, 64); return n }
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &c.st
	since := func() string { return at.Sub(c.Started).Round(time.Millisecond).String() }
	switch f[0] {
	case "start":
		st.started = at
	case "fetch":
		if st.firstFetch.IsZero() {
			st.firstFetch = at
			st.early = append(st.early, since()+" first fetch")
		}
	case "commit":
		if st.firstCommit.IsZero() {
			st.firstCommit, st.firstTxn = at, num("records")
			st.early = append(st.early, since()+" first commit")
		}
		st.commits++
		st.committed += num("records")
		st.commitsAt = append(st.commitsAt, at)
	case "restored":
		st.restored = append(st.restored, restoredTask{at: at, task: kv["task"], records: num("records"), took: time.Duration(num("took_ns"))})
		if st.firstCommit.IsZero() {
			st.early = append(st.early, fmt.Sprintf("%s task %s restored %d records in %v", since(), kv["task"], num("records"), time.Duration(num("took_ns")).Round(time.Millisecond)))
		}
	case "log":
		msg, _ := strconv.Unquote(strings.SplitN(line, "msg=", 2)[1])
		switch {
		case strings.Contains(msg, revokeLog):
			st.revokes = append(st.revokes, at)
		case strings.HasPrefix(msg, "transaction aborted by a rebalance"):
			st.rebalanceAborts = append(st.rebalanceAborts, at)
		}
		if st.firstCommit.IsZero() {
			st.early = append(st.early, since()+" log: "+msg)
		}
	case "rpc":
		if st.firstCommit.IsZero() {
			s := since() + " " + kv["name"]
			if e, ok := kv["err"]; ok {
				s += " err " + e
			}
			st.early = append(st.early, s)
		}
	case "mem":
		m := memSample{at: at, rss: num("rss"), hwm: num("hwm"), goTotal: num("go_total"), goReleased: num("go_released"),
			heapObjects: num("heap_objects"), heapGoal: num("heap_goal")}
		st.mem = m
		if m.rss > st.memPeak.rss {
			st.memPeak = m
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// state returns a copy of what the process reported so far.
func (c *childProc) state() childState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.restored = append([]restoredTask(nil), st.restored...)
	st.early = append([]string(nil), st.early...)
	st.commitsAt = append([]time.Time(nil), st.commitsAt...)
	st.revokes = append([]time.Time(nil), st.revokes...)
	st.rebalanceAborts = append([]time.Time(nil), st.rebalanceAborts...)
	return st
}

// wait waits until cond holds for what the process reported, it exits,
// or ctx is done.
func (c *childProc) wait(ctx context.Context, cond func(*childState) bool) error {
	for {
		c.mu.Lock()
		ok, ch := cond(&c.st), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-c.Exited():
			c.mu.Lock()
			ok := cond(&c.st)
			c.mu.Unlock()
			if ok {
				return nil
			}
			return c.Alive()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
