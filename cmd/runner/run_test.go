package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
)

// startTestBroker starts an in-process embedded broker with topics.
func startTestBroker(t *testing.T, partitions int32, topics ...string) string {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, []string{addr}, partitions, topics...))
	return addr
}

// A worker copies its input exactly once, and SIGTERM makes it commit, leave
// the group and exit 0.
func TestRunPassthroughStopsCleanly(t *testing.T) {
	addr := startTestBroker(t, 4, "in", "out")
	p := startRunner(t, nil, "run", "passthrough", "--brokers", addr, "--instance", "w1",
		"--metrics-addr", "", "--session-timeout", "3s", "--input", "in", "--output", "out")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 2000
	require.NoError(t, txntest.Produce(ctx, []string{addr}, "in", 0, n, 100, 50))
	rep, err := txntest.Verify(ctx, []string{addr}, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s; worker stderr:\n%s", rep, p.stderr())

	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), "stderr:\n%s", p.stderr())
	adm := newAdmin(t, addr)
	groups, err := adm.DescribeGroups(ctx, "passthrough")
	require.NoError(t, err)
	g, ok := groups["passthrough"]
	require.True(t, ok)
	require.Empty(t, g.Members, "a stopped worker leaves the group")
}

// A missing source topic stops the worker at start with exit 1 and a
// message that names the topic.
func TestRunMissingSourceTopic(t *testing.T) {
	addr := startTestBroker(t, 1, "out")
	p := startRunner(t, nil, "run", "passthrough", "--brokers", addr, "--instance", "w1",
		"--metrics-addr", "", "--input", "nope", "--output", "out")
	require.Equal(t, 1, p.wait(t))
	require.Contains(t, p.stderr(), `source topic "nope" does not exist`)
}

// Flags come from SLUICE_<FLAG> too; a bad guarantee is a usage error.
func TestRunUsage(t *testing.T) {
	p := startRunner(t, nil, "run", "passthrough", "--guarantee", "twice")
	require.Equal(t, 2, p.wait(t))
	require.Contains(t, p.stderr(), `unknown guarantee "twice"`)

	p = startRunner(t, []string{"SLUICE_GUARANTEE=twice"}, "run", "passthrough")
	require.Equal(t, 2, p.wait(t))

	p = startRunner(t, nil, "run", "nosuchapp")
	require.Equal(t, 2, p.wait(t))
	require.Contains(t, p.stderr(), `unknown app "nosuchapp"`)
}

// runner demo runs end to end, with a SIGKILLed worker, and reports clean.
func TestDemoPassthrough(t *testing.T) {
	p := startRunner(t, nil, "demo", "passthrough", "--records", "20000")
	var out []string
	for line := range p.lines {
		out = append(out, line)
	}
	require.Equal(t, 0, p.wait(t), "stdout:\n%s\nstderr:\n%s", strings.Join(out, "\n"), p.stderr())
	all := strings.Join(out, "\n")
	require.Contains(t, all, "SIGKILL w2")
	require.Contains(t, all, "duplicates:   0")
	require.Contains(t, all, "missing:      0")
	require.Contains(t, all, "demo: clean")
}

func TestDescribeAndApps(t *testing.T) {
	p := startRunner(t, nil, "apps")
	var apps []string
	for l := range p.lines {
		apps = append(apps, strings.Fields(l)[0])
	}
	require.Equal(t, 0, p.wait(t))
	require.Equal(t, []string{"dedup", "enrich", "passthrough", "revenue"}, apps)

	p = startRunner(t, nil, "describe", "passthrough", "--input", "a", "--output", "b")
	var out []string
	for l := range p.lines {
		out = append(out, l)
	}
	require.Equal(t, 0, p.wait(t))
	all := strings.Join(out, "\n")
	require.Contains(t, all, "Source: read-a (topics: [a])")
	require.Contains(t, all, "Sink: write-b (topic: b)")
	require.Contains(t, all, "passthrough-dlq (dlq)")
}

// demoReport runs "runner demo APP" on 10,000 records, requires a clean
// exit and every line of want in its report, and returns the report.
func demoReport(t *testing.T, app string, want ...string) string {
	t.Helper()
	p := startRunner(t, nil, "demo", app, "--records", "10000")
	var out []string
	for line := range p.lines {
		out = append(out, line)
	}
	all := strings.Join(out, "\n")
	require.Equal(t, 0, p.wait(t), "stdout:\n%s\nstderr:\n%s", all, p.stderr())
	for _, w := range want {
		require.Contains(t, all, w)
	}
	return all
}

// runner demo enrich: repartition, table, join and DLQ through a SIGKILL.
func TestDemoEnrich(t *testing.T) {
	demoReport(t, "enrich", "duplicates:       0", "missing:          0", "wrong customer:   0",
		"DLQ'd:            103 (0 not as expected)")
}

// runner demo dedup: repeats dropped, each event_id once, through a
// repartition, the dedup store's restore after a SIGKILL, and the DLQ.
func TestDemoDedup(t *testing.T) {
	demoReport(t, "dedup", "events in:        10000 (980 repeat an earlier event_id; 103 malformed)",
		"unique out:       8917", "duplicates:       0", "missing:          0", "DLQ'd:            103 (0 not as expected)")
}

// runner demo revenue: one exact record per closed (customer, window),
// late orders dropped, through a repartition, a window store restored
// after a SIGKILL, and the DLQ.
func TestDemoRevenue(t *testing.T) {
	demoReport(t, "revenue", "duplicates:       0", "missing:          0", "wrong totals:     0", "unexpected:       0",
		"DLQ'd:            103 (0 not as expected)")
}
