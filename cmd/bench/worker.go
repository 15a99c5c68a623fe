package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/txn"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// childEnv, when set in the environment, makes the bench binary a worker
// process instead: it runs the count topology (countTopology), or the
// dedup topology (dedupTopologySpan) when childConfig.Topology says so, with the
// configuration the variable holds (JSON, childConfig) until SIGTERM, and
// reports what happens as lines on stdout:
//
//	<event> <unix nanoseconds> [key=value ...]
//
// The restart, rss and bounded benchmarks start it, SIGKILL it, restart it and
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
	// Topology is the topology the worker runs: topologyCount (or
	// empty, the default) or topologyDedup.
	Topology string `json:"topology,omitempty"`
	// DedupSpan is the dedup topology's span; 0: an hour.
	DedupSpan time.Duration `json:"dedup_span,omitempty"`
}

// The topologies a worker process runs (childConfig.Topology).
const (
	topologyCount = "count"
	topologyDedup = "dedup"
)

// newChildWorker returns the worker of cfg's topology.
func newChildWorker(cfg childConfig, log *slog.Logger, opts ...kgo.Opt) (*txn.Worker, error) {
	t := topics{app: cfg.App, in: cfg.In, out: cfg.Out}
	switch cfg.Topology {
	case "", topologyCount:
		return newCountWorker(cfg.Brokers, t, cfg.Instance, cfg.StateDir, log, opts...)
	case topologyDedup:
		span := cfg.DedupSpan
		if span == 0 {
			span = time.Hour
		}
		topo, err := dedupTopologySpan(t.app, t.in, t.out, span)
		if err != nil {
			return nil, err
		}
		return txn.NewWorker(topo, txn.Config{
			Brokers:        cfg.Brokers,
			Instance:       cfg.Instance,
			StateDir:       cfg.StateDir,
			SessionTimeout: sessionTimeout,
			Logger:         log,
			ClientOpts:     opts,
		})
	}
	return nil, fmt.Errorf("unknown topology %q (have %s, %s)", cfg.Topology, topologyCount, topologyDedup)
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
	w, err := newChildWorker(cfg, slog.New(h), opts...)
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
