package txn_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
)

// cluster is an in-process embedded broker for one test.
type cluster struct {
	t       *testing.T
	brokers []string
}

func newCluster(t *testing.T, partitions int32, topics ...string) *cluster {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cl := &cluster{t: t, brokers: []string{addr}}
	require.NoError(t, broker.CreateTopics(cl.ctx(30*time.Second), cl.brokers, partitions, topics...))
	return cl
}

// busyCPU keeps two other processes spinning on the CPU until t ends, the
// least load an exactly-once test runs under: a loaded machine reorders
// what an idle one keeps in step (a rebalance against a transaction, a
// fetch against a commit).
func busyCPU(t *testing.T) {
	t.Helper()
	for range 2 {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
}

func (c *cluster) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	c.t.Cleanup(cancel)
	return ctx
}

// workers runs in-process workers of one app; each can be stopped.
type workers struct {
	c    *cluster
	topo topology.Topology
	cfg  txn.Config
	wg   sync.WaitGroup
	mu   sync.Mutex
	stop map[string]context.CancelFunc
	done map[string]chan struct{}
	errs []error
	// query, when set, is asked of each worker all along it runs (it
	// gets its own address to advertise), with its context.
	query func(ctx context.Context, w *txn.Worker) error
}

func (c *cluster) workers(topo topology.Topology, cfg txn.Config) *workers {
	cfg.Brokers = c.brokers
	if cfg.Logger == nil {
		var out io.Writer = io.Discard
		if os.Getenv("SLUICE_TEST_LOG") != "" {
			out = os.Stderr // debugging a test: SLUICE_TEST_LOG=1
		}
		cfg.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w := &workers{c: c, topo: topo, cfg: cfg, stop: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}}
	c.t.Cleanup(w.stopAll)
	return w
}

func (w *workers) start(instance string) {
	cfg := w.cfg
	cfg.Instance = instance
	if cfg.StateDir != "" {
		cfg.StateDir = filepath.Join(cfg.StateDir, instance) // as runner's default
	}
	if w.query != nil {
		cfg.AdvertiseAddr = instance + ".invalid:9100"
	}
	wk, err := txn.NewWorker(w.topo, cfg)
	require.NoError(w.c.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.mu.Lock()
	w.stop[instance] = cancel
	w.done[instance] = done
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(done)
		if err := wk.Run(ctx); err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, fmt.Errorf("%s: %w", instance, err))
			w.mu.Unlock()
		}
	}()
	if w.query != nil {
		w.wg.Go(func() {
			if err := w.query(ctx, wk); err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Errorf("%s: query: %w", instance, err))
				w.mu.Unlock()
			}
		})
	}
}

// halt stops a worker gracefully and waits until it has left the group: a
// restart with the same instance id while the old one still runs would be
// two live workers with one id.
func (w *workers) halt(instance string) {
	w.mu.Lock()
	cancel, done := w.stop[instance], w.done[instance]
	delete(w.stop, instance)
	delete(w.done, instance)
	w.mu.Unlock()
	cancel()
	<-done
}

func (w *workers) stopAll() {
	w.mu.Lock()
	for _, cancel := range w.stop {
		cancel()
	}
	clear(w.stop)
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *workers) requireNoErrors() {
	w.c.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Empty(w.c.t, w.errs)
}

// Every sequence number reaches the output exactly once while workers join
// and leave the group mid-run, with the CPU busy.
func TestExactlyOnceWithMembersJoiningAndLeaving(t *testing.T) {
	const n = 100_000
	busyCPU(t)
	c := newCluster(t, 8, "in", "out")
	topo, err := passthrough.Build("eos", "in", "out")
	require.NoError(t, err)
	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second})
	ws.start("w1")
	ws.start("w2")
	ws.start("w3")

	ctx := c.ctx(3 * time.Minute)
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n/4, 1000, 100))
	ws.start("w4") // joins
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", n/4, n/2, 1000, 100))
	ws.halt("w1") // leaves
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", n/2, 3*n/4, 1000, 100))
	ws.halt("w2")
	ws.start("w1") // comes back
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 3*n/4, n, 1000, 100))

	rep, err := txntest.Verify(ctx, c.brokers, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s", rep)
	ws.stopAll()
	ws.requireNoErrors()
}
