package txn_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
)

// A worker started while its broker is down (restarting, or not up yet)
// waits for it instead of exiting: it retries checking its topics, then
// runs as usual once the broker is back.
func TestWorkerWaitsForAnUnreachableBroker(t *testing.T) {
	dir := t.TempDir()
	c, addr, err := broker.Start(broker.Config{DataDir: dir})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, []string{addr}, 4, "in", "out"))
	c.Close()

	topo, err := passthrough.Build("unreachable", "in", "out")
	require.NoError(t, err)
	var log txntest.SyncBuffer
	w, err := txn.NewWorker(topo, txn.Config{Brokers: []string{addr}, Instance: "w1", SessionTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer stop()

	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "the brokers cannot be reached; retrying") {
		select {
		case err := <-done:
			t.Fatalf("the worker stopped while the broker was down: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "no retry logged within a minute:\n%s", log.String())
	}
	c, _, err = broker.Start(broker.Config{Addr: addr, DataDir: dir})
	require.NoError(t, err)
	defer c.Close()
	const n = 2_000
	require.NoError(t, txntest.Produce(ctx, []string{addr}, "in", 0, n, 100, 50))
	rep, err := txntest.Verify(ctx, []string{addr}, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s", rep)
	stop()
	require.NoError(t, <-done)
}
