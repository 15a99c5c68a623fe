package txn_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/txn/txntest/child"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The test binary doubles as a worker process: with envWorker=1 it runs one
// passthrough worker configured by the other env* variables instead of the
// tests, so that tests can SIGKILL, SIGSTOP and restart real processes.
const (
	envWorker    = "SLUICE_TEST_WORKER"
	envBrokers   = "SLUICE_TEST_BROKERS" // comma-separated
	envApp       = "SLUICE_TEST_APP"
	envInput     = "SLUICE_TEST_INPUT"
	envOutput    = "SLUICE_TEST_OUTPUT"
	envInstance  = "SLUICE_TEST_INSTANCE"
	envSession   = "SLUICE_TEST_SESSION_TIMEOUT" // a time.Duration
	envGuarantee = "SLUICE_TEST_GUARANTEE"       // txn.Guarantee.String()
	envCrash     = "SLUICE_TEST_CRASH"           // crashPoint.String()
	envTopology  = "SLUICE_TEST_TOPOLOGY"        // "passthrough" (default), "sum", "dedup", "wcount" or "revenue"
	envStateDir  = "SLUICE_TEST_STATE_DIR"
	envFlush     = "SLUICE_TEST_STATE_FLUSH_WRITES" // txn.Config.StateFlushWrites
)

// Log messages the tests look for in a worker's output.
const (
	msgCommitted  = "transaction committed" // the runtime's Debug line per commit
	msgStarting   = "worker starting"       // the runtime's first line
	msgRecreated  = "re-creating the transactional session"
	msgUnknown    = "transaction outcome unknown"
	msgCrashPoint = "crash point reached" // logged by crashHook just before it kills
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorker) == "1" {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// workerMain runs one passthrough worker until SIGTERM (exit 0) or a fatal
// error (exit 1). It logs at Debug level, as slog text, to stdout.
func workerMain() int {
	commits := &atomic.Int64{}
	log := slog.New(commitCounter{
		Handler: slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}),
		n:       commits,
	})
	session, err := time.ParseDuration(os.Getenv(envSession))
	if err != nil {
		log.Error("bad "+envSession, "err", err)
		return 2
	}
	guarantee, err := txn.ParseGuarantee(os.Getenv(envGuarantee))
	if err != nil {
		log.Error("bad "+envGuarantee, "err", err)
		return 2
	}
	cfg := txn.Config{
		Brokers:        strings.Split(os.Getenv(envBrokers), ","),
		Instance:       os.Getenv(envInstance),
		Guarantee:      guarantee,
		CommitInterval: 50 * time.Millisecond,
		SessionTimeout: session,
		Logger:         log,
		StateDir:       os.Getenv(envStateDir),
	}
	if s := os.Getenv(envFlush); s != "" {
		if cfg.StateFlushWrites, err = strconv.Atoi(s); err != nil {
			log.Error("bad "+envFlush, "err", err)
			return 2
		}
	}
	if spec := os.Getenv(envCrash); spec != "" {
		cp, err := parseCrashPoint(spec)
		if err != nil {
			log.Error("bad "+envCrash, "err", err)
			return 2
		}
		hook := &crashHook{at: cp, commits: commits, log: log}
		cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(hook))
		armed := make(chan os.Signal, 1)
		signal.Notify(armed, syscall.SIGUSR1)
		go func() {
			<-armed
			hook.arm()
		}()
	}
	build := passthrough.Build
	switch os.Getenv(envTopology) {
	case "sum":
		build = sumTopology
	case "dedup":
		build = dedupTopology
	case "wcount":
		build = wcountTopology
	case "revenue":
		build = revenueTopology
	}
	topo, err := build(os.Getenv(envApp), os.Getenv(envInput), os.Getenv(envOutput))
	if err != nil {
		log.Error("build topology", "err", err)
		return 2
	}
	w, err := txn.NewWorker(topo, cfg)
	if err != nil {
		log.Error("new worker", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	log.Info("worker stopped")
	return 0
}

// commitCounter counts the runtime's "transaction committed" log records.
type commitCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (c commitCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == msgCommitted {
		c.n.Add(1)
	}
	return c.Handler.Handle(ctx, r)
}

func (c commitCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return commitCounter{Handler: c.Handler.WithAttrs(as), n: c.n}
}

func (c commitCounter) WithGroup(name string) slog.Handler {
	return commitCounter{Handler: c.Handler.WithGroup(name), n: c.n}
}

// crashPoint says when a worker process kills itself: once armed (by
// SIGUSR1, see proc.armCrash), at the first response to request key read
// after commits more commits.
type crashPoint struct {
	key     kmsg.Key
	commits int64
}

func (c crashPoint) String() string { return fmt.Sprintf("%d:%d", c.key, c.commits) }

func parseCrashPoint(s string) (crashPoint, error) {
	k, n, ok := strings.Cut(s, ":")
	key, err1 := strconv.ParseInt(k, 10, 16)
	commits, err2 := strconv.ParseInt(n, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return crashPoint{}, fmt.Errorf("crash point %q: want <request key>:<commits>", s)
	}
	return crashPoint{key: kmsg.Key(key), commits: commits}, nil
}

// crashHook SIGKILLs its own process at its crash point. A commit is a
// "transaction committed" log record (exactly_once) or an OffsetCommit
// response (the other guarantees commit offsets with plain OffsetCommits).
// The hook runs in the client's read path before the response is handed
// on, so the worker never acts on the response that triggers the crash.
type crashHook struct {
	at      crashPoint
	armed   atomic.Bool
	commits *atomic.Int64 // since armed
	log     *slog.Logger
}

var _ kgo.HookBrokerRead = (*crashHook)(nil)

// arm starts counting commits towards the crash.
func (h *crashHook) arm() {
	h.commits.Store(0)
	h.armed.Store(true)
}

func (h *crashHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		return
	}
	if key == int16(kmsg.OffsetCommit) {
		h.commits.Add(1)
	}
	if key == int16(h.at.key) && h.armed.Load() && h.commits.Load() >= h.at.commits {
		h.log.Warn(msgCrashPoint, "key", kmsg.NameForKey(key), "commits", h.commits.Load())
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; do not let the response through
	}
}

// procConfig configures a worker process.
type procConfig struct {
	brokers        []string
	app            string
	input, output  string
	instance       string
	sessionTimeout time.Duration
	guarantee      txn.Guarantee
	crash          *crashPoint // nil: no crash
	topology       string      // "" (passthrough), "sum", "dedup", "wcount" or "revenue"
	stateDir       string      // the worker's own state directory
	flushWrites    int         // txn.Config.StateFlushWrites; 0: the default
}

func (c procConfig) env() []string {
	env := []string{
		envWorker + "=1",
		envBrokers + "=" + strings.Join(c.brokers, ","),
		envApp + "=" + c.app,
		envInput + "=" + c.input,
		envOutput + "=" + c.output,
		envInstance + "=" + c.instance,
		envSession + "=" + c.sessionTimeout.String(),
		envGuarantee + "=" + c.guarantee.String(),
	}
	if c.crash != nil {
		env = append(env, envCrash+"="+c.crash.String())
	}
	if c.topology != "" {
		env = append(env, envTopology+"="+c.topology)
	}
	if c.stateDir != "" {
		env = append(env, envStateDir+"="+c.stateDir)
	}
	if c.flushWrites != 0 {
		env = append(env, envFlush+"="+strconv.Itoa(c.flushWrites))
	}
	return env
}

// proc is a worker running as a child process of the test binary. The
// test's cleanup SIGKILLs it if it still runs, and on failure logs the end
// of its output.
type proc struct {
	*child.Process
	t *testing.T
}

func startProc(t *testing.T, cfg procConfig) *proc {
	t.Helper()
	c, err := child.Start(child.Self(cfg.env()...), child.Options{Name: cfg.instance})
	require.NoError(t, err)
	p := &proc{Process: c, t: t}
	t.Cleanup(func() {
		if !p.HasExited() {
			p.Kill()
		}
		if dir := os.Getenv("SLUICE_TEST_LOG_DIR"); dir != "" {
			if err := p.Lines.Save(filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", t.Name(), p.Name, p.Pid()))); err != nil {
				t.Logf("keeping the log of a worker: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("--- %s (pid %d, %v): last lines other than per-commit debug lines:\n%s",
				p.Name, p.Pid(), p.State(), p.Lines.Tail(60, func(l string) bool { return !strings.Contains(l, msgCommitted) }))
		}
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.Signal(sig))
}

// waitExit waits up to d for the process to exit and returns how it did.
// A process that hangs is sent SIGQUIT, and its goroutine dump logged.
func (p *proc) waitExit(d time.Duration) *os.ProcessState {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if p.WaitExit(ctx) == nil {
		return p.State()
	}
	p.t.Logf("%s: goroutines of the hung process:\n%s", p.Name, p.Quit(10*time.Second))
	require.FailNow(p.t, "process did not exit", "%s: still running after %v", p.Name, d)
	return nil
}

// armCrash arms the worker's crash point: crash tests arm it once the
// group is warmed up, so that the crash happens while input flows.
func (p *proc) armCrash() { p.signal(syscall.SIGUSR1) }

// requireKilled requires that the process exited through SIGKILL.
func (p *proc) requireKilled() {
	p.t.Helper()
	<-p.Exited()
	require.True(p.t, p.Killed(), "%s: want death by SIGKILL, got %v", p.Name, p.State())
}

// waitLine waits up to d for an output line that arrived at or after since
// and contains one of subs, and returns when it arrived. It fails the test
// if the process exits or d passes first.
func (p *proc) waitLine(since time.Time, d time.Duration, subs ...string) time.Time {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	at, err := p.Lines.Wait(ctx, since, p.Exited(), subs...)
	require.NoError(p.t, err, "%s (exited: %v)", p.Name, p.HasExited())
	return at
}

// waitCommitOrIdle waits up to d until p has committed a transaction
// since it started, and returns true; or returns false once inputOver
// reports that no more input is coming and the group has consumed all of
// it (what p owns was processed by others before it joined, or it owns
// nothing), so that p has nothing to commit. It fails the test if p exits
// or d passes first.
func (f *fleet) waitCommitOrIdle(p *proc, d time.Duration, inputOver func() bool) bool {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := p.Lines.Find(p.Started, msgCommitted); ok {
			return true
		}
		if inputOver() && consumed(ctx, f.adm, f.cfg.app) {
			// Committed in the meantime, or idle.
			_, ok := p.Lines.Find(p.Started, msgCommitted)
			return ok
		}
		select {
		case <-ctx.Done():
			require.FailNow(f.t, "no commit", "%s: no commit since it started, and input left to process, after %v", p.Name, d)
		case <-p.Exited():
			require.FailNow(f.t, "worker exited", "%s exited waiting for its commit: %v", p.Name, p.State())
		case <-tick.C:
		}
	}
}

// fleet is a fresh embedded broker with topics "in" and "out" (8
// partitions each) and the worker processes of one passthrough app on it.
type fleet struct {
	t       *testing.T
	brokers []string
	adm     *kadm.Client
	cfg     procConfig // every worker's, but for instance and crash
}

const fleetPartitions = 8

func newFleet(t *testing.T, app string, g txn.Guarantee) *fleet {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, brokers, fleetPartitions, "in", "out"))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return &fleet{t: t, brokers: brokers, adm: kadm.NewClient(cl), cfg: procConfig{
		brokers: brokers, app: app, input: "in", output: "out",
		sessionTimeout: 3 * time.Second, guarantee: g,
	}}
}

// start starts a worker process; crash is nil for one that does not crash.
func (f *fleet) start(instance string, crash *crashPoint) *proc {
	cfg := f.cfg
	cfg.instance, cfg.crash = instance, crash
	return startProc(f.t, cfg)
}

// stopAll stops the processes concurrently (each stop takes a commit and a
// group leave) and requires each to exit cleanly.
func (f *fleet) stopAll(ps ...*proc) {
	f.t.Helper()
	for _, p := range ps {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		st := p.waitExit(30 * time.Second)
		require.True(f.t, st.Success(), "%s: exit after SIGTERM: %v", p.Name, st)
	}
}

// warmUp produces a first chunk of input and waits until the workers ps
// own partitions in a stable group and consumed the chunk. It returns the
// number of records produced.
func (f *fleet) warmUp(ps ...*proc) int64 {
	f.t.Helper()
	return warmUp(f.t, f.brokers, f.adm, f.cfg.app, len(ps))
}

// warmUp produces sequence numbers [0, 400) to "in" and waits until the
// group app is stable with members members, each owning partitions, and
// the records are consumed. It returns the number of records produced.
func warmUp(t *testing.T, brokers []string, adm *kadm.Client, app string, members int) int64 {
	t.Helper()
	const n = 400
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(t, txntest.Produce(ctx, brokers, "in", 0, n, 1000, 100))
	require.Eventually(t, func() bool {
		groups, err := adm.DescribeGroups(ctx, app)
		if err != nil {
			return false
		}
		g := groups[app]
		if g.State != "Stable" || len(g.Members) != members {
			return false
		}
		for _, m := range g.Members {
			// Partitions, not only topics: between the two rounds of a
			// cooperative rebalance a member's assignment may name the
			// topic with no partitions, and the group is Stable.
			a, ok := m.Assigned.AsConsumer()
			if !ok || !slices.ContainsFunc(a.Topics, func(tp kmsg.ConsumerMemberAssignmentTopic) bool { return len(tp.Partitions) > 0 }) {
				return false
			}
		}
		return consumed(ctx, adm, app)
	}, 60*time.Second, 50*time.Millisecond, "workers did not form a stable group and consume the warm-up input")
	return n
}

// consumed reports whether the committed offsets of group app have reached
// the end of every partition of "in".
func consumed(ctx context.Context, adm *kadm.Client, app string) bool {
	ends, err := adm.ListEndOffsets(ctx, "in")
	if err != nil {
		return false
	}
	committed, err := adm.FetchOffsets(kadm.RequireStable(ctx), app)
	if err != nil {
		return false
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		done = done && o.Err == nil && (o.Offset == 0 || ok && c.Err == nil && c.At == o.Offset)
	})
	return done
}

// assigned returns the partitions of topic that the group member with the
// given instance id owns.
func (f *fleet) assigned(instance, topic string) []int32 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := f.adm.DescribeGroups(ctx, f.cfg.app)
	require.NoError(f.t, err)
	for _, m := range groups[f.cfg.app].Members {
		if m.InstanceID == nil || *m.InstanceID != instance {
			continue
		}
		a, ok := m.Assigned.AsConsumer()
		require.True(f.t, ok, "member %s has no consumer assignment", instance)
		for _, tp := range a.Topics {
			if tp.Topic == topic {
				return tp.Partitions
			}
		}
	}
	return nil
}

// feeder produces sequence-numbered records in the background, a chunk
// at a time (txntest.Produce: keys k0..k999, 100-byte values), until it
// has produced limit records or is stopped.
type feeder struct {
	t *testing.T
	// issued is the end of the chunks started so far: every record at or
	// above it is produced later.
	issued atomic.Int64
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // valid once done is closed
}

// startFeeder starts feeding topic with sequence numbers [from, limit),
// one chunk per tick of every (or slower, when producing takes longer).
func startFeeder(t *testing.T, brokers []string, topic string, from, limit, chunk int64, every time.Duration) *feeder {
	return startKeyedFeeder(t, brokers, topic, from, limit, chunk, every, 1000)
}

// startKeyedFeeder is startFeeder with keys "k<seq mod keys>" (keys 0: one
// key per record).
func startKeyedFeeder(t *testing.T, brokers []string, topic string, from, limit, chunk int64, every time.Duration, keys int64) *feeder {
	return startFeederWith(t, from, limit, chunk, every, func(ctx context.Context, lo, hi int64) error {
		return txntest.Produce(ctx, brokers, topic, lo, hi, keys, 100)
	})
}

// startFeederWith starts feeding sequence numbers [from, limit), one chunk
// per tick of every (or slower, when producing takes longer): produce
// writes [lo, hi) and returns once it is acknowledged.
func startFeederWith(t *testing.T, from, limit, chunk int64, every time.Duration, produce func(ctx context.Context, lo, hi int64) error) *feeder {
	f := &feeder{t: t, quit: make(chan struct{}), done: make(chan struct{})}
	f.issued.Store(from)
	go func() {
		defer close(f.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for lo := from; lo < limit; {
			select {
			case <-f.quit:
				return
			case <-tick.C:
			}
			hi := min(lo+chunk, limit)
			f.issued.Store(hi)
			if f.err = produce(ctx, lo, hi); f.err != nil {
				return
			}
			lo = hi
		}
	}()
	t.Cleanup(func() { f.once.Do(func() { close(f.quit) }); <-f.done })
	return f
}

// over reports whether the feeder has ended: it produces nothing more.
func (f *feeder) over() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// wait waits until the feeder has produced everything and returns the end
// of the sequence.
func (f *feeder) wait() int64 {
	f.t.Helper()
	<-f.done
	require.NoError(f.t, f.err)
	return f.issued.Load()
}

// stop stops the feeder after its current chunk and returns the end of
// the sequence produced.
func (f *feeder) stop() int64 {
	f.t.Helper()
	f.once.Do(func() { close(f.quit) })
	return f.wait()
}

// waitIssued waits until the feeder has started producing every record
// below seq, or has ended, within a minute.
func (f *feeder) waitIssued(seq int64) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		select {
		case <-f.done:
			return true
		default:
			return f.issued.Load() >= seq
		}
	}, time.Minute, 5*time.Millisecond, "the feeder never reached %d", seq)
}
