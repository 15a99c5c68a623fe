package txn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/txn/batch"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Worker runs one member of an application's worker group: it consumes the
// topology's source topics as part of the consumer group named by the app
// id, runs every record through its task, and produces the results with the
// configured guarantee.
//
// Workers of one app on any number of machines form one group; partitions
// (and so tasks) move between them on rebalance. Kafka is the coordinator:
// sluice adds none of its own.
type Worker struct {
	topo topology.Topology
	cfg  Config
	log  *slog.Logger
	m    *metrics

	layout *layout
	// partitions checks where co-partitioned source records sit.
	partitions *partitionCheck

	global topology.Global // the worker's global tables, or nil
	// replaying bounds the tasks replaying changelog records at once to
	// the CPUs: tasks are created in parallel, which saves round trips,
	// but replays are CPU-bound and slow each other down past that.
	replaying chan struct{}
	// pace sizes a transaction's polls; the loop goroutine's.
	pace pace
	// txnOpen is set while a transaction is open: a restore then is a
	// bug (restore refuses it).
	txnOpen atomic.Bool
	// now is the clock a batch's commit interval and pace are measured
	// by: time.Now, a fake one in tests that must not depend on how fast
	// the machine is.
	now func() time.Time

	health health     // what Health reports
	obs    observed   // the loop's, for the latency and lag
	sizes  storeSizes // the loop's, for the store metrics

	// Interactive queries (query.go): the queryable stores, where their
	// keys live (set once the topics are read), the queries waiting for
	// the loop, what the session's member holds, and which member holds
	// what else.
	qstores []topology.QueryableStore
	routes  atomic.Pointer[map[int]queryRoute]
	queries chan *queryRequest
	held    atomic.Pointer[heldPartitions]
	dir     directory

	mu      sync.Mutex
	revoked map[string][]int32 // since the last commit, from group callbacks
	wake    context.CancelFunc // ends the poll in progress (pollContext); nil: none
	// assignment is the current session's partitions.
	assignment assignment
	// starts is the current session's partitions whose tasks the loop is
	// to prepare (prepareAssigned).
	starts atomic.Pointer[startOffsets]
}

// NewWorker validates cfg and returns a worker for topo. It does not
// connect; Run does.
func NewWorker(topo topology.Topology, cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(os.TempDir(), "sluice", topo.AppID(), cfg.Instance)
	}
	log := cfg.Logger.With("app", topo.AppID(), "instance", cfg.Instance)
	w := &Worker{topo: topo, cfg: cfg, log: log, m: newMetrics(cfg.Registerer, topo.AppID(), cfg.Instance),
		replaying: make(chan struct{}, runtime.GOMAXPROCS(0)), now: time.Now,
		queries: make(chan *queryRequest, queryQueue), dir: directory{group: topo.AppID()}}
	if q, ok := topo.(topology.Queryable); ok {
		w.qstores = q.QueryableStores()
	}
	w.sizes.every = storeSizesEvery
	w.sizes.next = time.Now().Add(w.sizes.every)
	return w, nil
}

// Run runs the worker until ctx is cancelled or a fatal error occurs. On
// cancellation it ends the open transaction (committing what was processed),
// leaves the group and returns nil. Fencing, unknown transaction outcomes and
// broker outages are recovered from inside Run; the returned error is a
// *FatalError, a topic problem found at start (missing source topic,
// co-partitioning, internal topic partition count), or a task's error under
// the fail error policy.
//
// Run must be called once.
func (w *Worker) Run(parent context.Context) error {
	w.health.running.Store(true)
	defer w.health.running.Store(false)
	ctx, fail := context.WithCancelCause(parent)
	defer fail(nil)
	if err := w.prepare(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	w.log.Info("worker starting", "guarantee", w.cfg.Guarantee.String(), "subtopologies", len(w.topo.Subtopologies()))
	g, err := w.topo.NewGlobal(w.cfg.StateDir)
	if err != nil {
		return err
	}
	if g != nil {
		// A global table that cannot be kept current stops the worker.
		gt, err := w.startGlobal(ctx, g, fail)
		if err != nil {
			g.Close()
			if parent.Err() != nil {
				return nil
			}
			return err
		}
		w.global = g
		defer func() {
			if err := gt.close(); err != nil {
				w.log.Warn("closing global tables", "err", err)
			}
		}()
	}
	switch w.cfg.Guarantee {
	case ExactlyOnce:
		err = w.runExactlyOnce(ctx)
	default:
		err = w.runPlain(ctx)
	}
	w.leaveGroup()
	if cause := context.Cause(ctx); err == nil && parent.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// prepare checks and creates topics with a short-lived admin client.
func (w *Worker) prepare(ctx context.Context) error {
	cl, err := kgo.NewClient(w.baseOpts()...)
	if err != nil {
		return fmt.Errorf("txn: client: %w", err)
	}
	defer cl.Close()
	for attempt := 0; ; attempt++ {
		l, err := prepareTopics(ctx, kadm.NewClient(cl), w.topo, w.topo.SinkTopics(), replicationOf(w.cfg.ReplicationFactor))
		if err == nil {
			w.layout = l
			w.partitions = newPartitionCheck(w.topo, l.partitions)
			routes := newQueryRoutes(w.topo, l.partitions)
			w.routes.Store(&routes)
			return nil
		}
		// A broker that cannot be reached (restarting, or not up yet)
		// is waited for, as a session waits for it: only what the user
		// must fix stops the worker.
		if !unreachable(err) {
			return err
		}
		w.log.Warn("the brokers cannot be reached; retrying", "err", err, "attempt", attempt+1)
		if !backoff(ctx, attempt) {
			return ctx.Err()
		}
	}
}

// unreachable reports whether err means no broker answered: a refused or
// reset connection, a dial that failed or timed out, a request cut off.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}

func (w *Worker) baseOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(w.cfg.Brokers...)}, w.cfg.ClientOpts...)
}

// groupOpts are the consumer and producer options every guarantee shares;
// callers append their own, then Config.ClientOpts last.
func (w *Worker) groupOpts() []kgo.Opt {
	var sources []string
	for _, s := range w.topo.Subtopologies() {
		sources = append(sources, s.SourceTopics...)
	}
	held := &heldPartitions{w: w}
	starts := w.newStartOffsets()
	w.held.Store(held)
	balancer := newTaskBalancer(w.topo.Subtopologies(), held.synced)
	balancer.advertise = w.cfg.AdvertiseAddr
	opts := []kgo.Opt{
		kgo.SeedBrokers(w.cfg.Brokers...),
		kgo.ConsumerGroup(w.topo.AppID()),
		kgo.ConsumeTopics(sources...),
		kgo.InstanceID(w.cfg.Instance),
		kgo.SessionTimeout(w.cfg.SessionTimeout),
		// Kafka's rule: at most a third of the session timeout, so that one
		// late heartbeat never expires a member.
		kgo.HeartbeatInterval(min(3*time.Second, w.cfg.SessionTimeout/3)),
		kgo.Balancers(balancer),
		kgo.DisableAutoCommit(),
		// Batches never exceed a topic's max.message.bytes: a batch the
		// broker rejects would abort the transaction.
		kgo.ProducerBatchMaxBytesFn(w.maxMessageBytes),
		// Records go out as soon as the connection to their broker is
		// free: franz-go batches whatever gathers while a produce request
		// is in flight (one per broker, as the producer is idempotent),
		// and a transaction's end flushes anyway. Its default linger of
		// 10 ms only holds records back that the flush then waits for.
		kgo.ProducerLinger(0),
		kgo.WithLogger(kgoLogger{w.log}),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
			// Called at every join of the group, with what it added.
			w.m.rebalances.Inc()
			w.m.tasksAssigned.Add(float64(w.logTasks(slog.LevelInfo, "tasks assigned", assigned)))
			w.assign(cl, assigned, false)
			starts.assigned(assigned)
		}),
		kgo.AdjustFetchOffsetsFn(w.offsetsFetched(starts)),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			w.m.tasksRevoked.Add(float64(w.logTasks(slog.LevelInfo, "tasks revoked", revoked)))
			w.assign(cl, revoked, true)
			starts.revoked(revoked)
			w.onRevoked(ctx, cl, revoked)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
			w.m.tasksRevoked.Add(float64(w.logTasks(slog.LevelWarn, "tasks lost: the group moved on without this worker (a session timeout, or fenced)", lost)))
			w.assign(cl, lost, true)
			starts.revoked(lost)
			w.onRevoked(ctx, cl, lost)
			held.forget()
		}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Buffered fetch responses, decompressed, are the bulk of a
		// worker's memory (docs/architecture.md, "Fetch size").
		kgo.FetchMaxBytes(1 << 20),
		kgo.RecordPartitioner(newPartitioner(w.topo)),
	}
	return opts
}

// onRevoked records partitions whose tasks close after the open transaction
// ends, or at once when the loop is waiting for records: it ends that poll.
// It runs in franz-go's group goroutine and must not call End.
func (w *Worker) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.revoked == nil {
		w.revoked = map[string][]int32{}
	}
	for t, ps := range revoked {
		for _, p := range ps {
			if !slices.Contains(w.revoked[t], p) {
				w.revoked[t] = append(w.revoked[t], p)
			}
		}
	}
	if w.wake != nil && len(revoked) > 0 {
		w.wake() // an idle loop closes the tasks now
	}
}

// logTasks logs msg with the tasks of parts, if there are any, and
// returns how many there are.
func (w *Worker) logTasks(level slog.Level, msg string, parts map[string][]int32) int {
	tasks := w.tasksOf(parts)
	if len(tasks) > 0 {
		w.log.Log(context.Background(), level, msg, "tasks", tasks)
	}
	return len(tasks)
}

// tasksOf names the tasks of the given partitions, in order ("1_3" is
// partition 3 of sub-topology 1).
func (w *Worker) tasksOf(parts map[string][]int32) []string {
	var ids []topology.TaskID
	for _, sub := range w.topo.Subtopologies() {
		for _, topic := range sub.SourceTopics {
			for _, p := range parts[topic] {
				if id := (topology.TaskID{Subtopology: sub.ID, Partition: p}); !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.SortFunc(ids, func(a, b topology.TaskID) int {
		return cmp.Or(cmp.Compare(a.Subtopology, b.Subtopology), cmp.Compare(a.Partition, b.Partition))
	})
	tasks := make([]string, len(ids))
	for i, id := range ids {
		tasks[i] = fmt.Sprintf("%d_%d", id.Subtopology, id.Partition)
	}
	return tasks
}

// takeRevoked returns and clears the partitions revoked since last asked,
// and drops their lag series. Only the loop's goroutine calls it.
func (w *Worker) takeRevoked() map[string][]int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.revoked
	w.revoked = nil
	w.forgetLag(r, false)
	return r
}

// newCore returns a batch core with no open task, for one session.
func (w *Worker) newCore() *batch.Core {
	return batch.New(w.topo, batch.Config{Lanes: w.cfg.Lanes})
}

// closeCore closes every task of a session that ends. A task that fails
// to close is gone either way; its next incarnation restores what its
// database misses.
func (w *Worker) closeCore(c *batch.Core) {
	if err := c.Close(); err != nil {
		w.log.Warn("closing the session's tasks", "err", err)
	}
	w.setTasks(0)
	w.forgetLag(nil, true)
	w.forgetStores()
	w.unassign()
	w.dir.forget()
}

func (w *Worker) taskConfig() topology.TaskConfig {
	return topology.TaskConfig{
		StateDir:         w.cfg.StateDir,
		StateFlushWrites: w.cfg.StateFlushWrites,
		Global:           w.global,
		Clock:            w.cfg.Clock,
		MaxMessageBytes:  func(topic string) int { return int(w.maxMessageBytes(topic)) },
		Metrics:          w.m.user,
	}
}

// maxMessageBytes returns the max.message.bytes of a topic the topology
// writes (Kafka's default for others), within franz-go's bounds.
func (w *Worker) maxMessageBytes(topic string) int32 {
	n, ok := w.layout.maxBytes[topic]
	if !ok {
		n = defaultMaxMessageBytes
	}
	return int32(min(max(n, 512), 1<<30))
}

// leaveGroup removes this static member from the group so that a graceful
// stop moves its partitions at once instead of after the session timeout.
// (franz-go does not leave the group on Close for static members.)
func (w *Worker) leaveGroup() {
	cl, err := kgo.NewClient(w.baseOpts()...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = w.topo.AppID()
	m := kmsg.NewLeaveGroupRequestMember()
	m.InstanceID = &w.cfg.Instance
	m.Reason = kmsg.StringPtr("sluice worker stopping")
	req.Members = append(req.Members, m)
	if _, err := req.RequestWith(ctx, cl); err != nil {
		w.log.Warn("leaving the group failed; partitions move after the session timeout", "err", err)
	}
}

// backoff waits before a retry, growing from 100ms to 5s; it returns false
// when ctx is done.
func backoff(ctx context.Context, attempt int) bool {
	d := min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// kgoLogger forwards franz-go's log messages to slog: warnings and errors
// as such, informational ones as debug messages.
type kgoLogger struct{ l *slog.Logger }

// Level passes franz-go's info messages (group joins, assignments,
// transaction steps) through as debug messages when debug is enabled.
func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kgo: "+msg, kv...)
	case kgo.LogLevelWarn:
		k.l.Warn("kgo: "+msg, kv...)
	default:
		k.l.Debug("kgo: "+msg, kv...)
	}
}
