package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
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

// runner demo runs end to end, with a SIGKILLed worker, and reports clean:
// the report alone on stdout, the progress on stderr.
func TestDemoPassthrough(t *testing.T) {
	demoReport(t, "passthrough", 20000, "duplicates:   0", "missing:      0", "demo: clean")
}

// runner demo outbox: orders written with their outbox rows in one
// database transaction, and customers changed with theirs, reach the
// sink's table exactly once through the relay, the dedup app (which drops
// the repeated events), the enrich app (which joins each order with its
// customer) and the sink, each SIGKILLed and restarted, and none of the
// rolled-back ones does; each order joined a value its customer had from
// the phase it was written in on (null for the deleted customer), and
// the totals per customer are the plan's. The report alone on stdout, the
// kills and the final totals on stderr.
func TestDemoOutbox(t *testing.T) {
	p := startRunner(t, nil, "demo", "outbox", "--records", "5000", "--workers", "2")
	var out []string
	for line := range p.lines {
		out = append(out, line)
	}
	all := strings.Join(out, "\n")
	require.Equal(t, 0, p.wait(t), "stdout:\n%s\nstderr:\n%s", all, p.stderr())
	require.True(t, strings.HasPrefix(all, "demo report (outbox, 2 dedup and 2 enrich workers;"), "stdout holds more than the report:\n%s", all)
	for _, w := range []string{
		"orders in:        5000 committed in 2000 transactions (5649 outbox rows, 649 repeat an order's event)",
		"customers in:     103 changes committed in 33 transactions: 51 first values, 50 updates, 1 deleted, 1 created later",
		"rolled back:      258 transactions: 621 orders, 17 customer changes (must never appear)",
		"relayed:          5649 records in order-events (0 duplicates, 0 missing, 0 rolled back, 0 not as written)",
		"relayed:          103 records in customers (0 duplicates, 0 missing, 0 rolled back, 0 not as written)",
		"deduplicated:     5000 records in orders (0 duplicates, 0 missing, 0 rolled back, 0 not as written)",
		"enriched:         5000 records in orders-enriched (0 duplicates, 0 missing, 0 rolled back, 0 not as written)",
		"sink table:       5000 rows in orders_enriched, 0 missing, 0 rolled back, 0 not in orders, 0 not as in orders",
		"joined customers: 0 wrong;", ", 50 a deleted customer (null)",
		"customers table:  51 rows, 0 not as planned",
		"totals:           equal: orders_enriched 5000 orders, 24920248 cents; orders table 5000, 24920248 cents; " +
			"planned 5000, 24920248 cents; 0 of 52 customers' sums differ",
		"duplicates:       0", "missing:          0", "rolled back seen: 0", "unexpected:       0",
		"kills:            3 relay, 3 sink, 1 dedup worker, 1 enrich worker",
		"demo: clean",
	} {
		require.Contains(t, all, w)
	}
	progress := p.stderr()
	for _, w := range []string{"SIGKILL relay", "relay restarted", "SIGKILL sink", "sink restarted", "SIGKILL d2", "SIGKILL e2",
		"the enrich workers have loaded the 51 customer changes committed so far"} {
		require.Contains(t, progress, "] "+w+"\n")
	}
	require.Equal(t, 4, strings.Count(progress, "] the enrich workers have loaded the "), "a wait before each phase:\n%s", progress)
	m := demoDone.FindStringSubmatch(progress)
	require.NotNil(t, m, "no final progress line on stderr:\n%s", progress)
	require.Equal(t, "5000", m[1], "orders committed: %s", m[0])
	processed, _ := strconv.Atoi(m[2])
	require.Positive(t, processed, m[0])
	require.Equal(t, "8", m[4], "kills: %s", m[0])
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

// demoReport runs "runner demo APP" on n records, requires a clean exit
// and every line of want in its report, and returns the report. The
// report must be all of stdout, and stderr must tell the progress: the
// crash, and the final totals from the workers' metrics.
func demoReport(t *testing.T, app string, n int, want ...string) string {
	t.Helper()
	p := startRunner(t, nil, "demo", app, "--records", strconv.Itoa(n))
	var out []string
	for line := range p.lines {
		out = append(out, line)
	}
	all := strings.Join(out, "\n")
	require.Equal(t, 0, p.wait(t), "stdout:\n%s\nstderr:\n%s", all, p.stderr())
	for _, w := range want {
		require.Contains(t, all, w)
	}
	require.True(t, strings.HasPrefix(all, "demo report ("+app+", "), "stdout holds more than the report:\n%s", all)

	progress := p.stderr()
	require.Contains(t, progress, "] SIGKILL w2\n")
	require.Contains(t, progress, "] w2 restarted with the same instance id\n")
	m := demoDone.FindStringSubmatch(progress)
	require.NotNil(t, m, "no final progress line on stderr:\n%s", progress)
	require.Equal(t, strconv.Itoa(n), m[1], "input acknowledged: %s", m[0])
	processed, _ := strconv.Atoi(m[2])
	committed, _ := strconv.Atoi(m[3])
	require.Positive(t, processed, m[0])
	require.Positive(t, committed, m[0])
	require.Equal(t, "1", m[4], "crashes: %s", m[0])
	return all
}

// demoDone is the final progress line of runner demo.
var demoDone = regexp.MustCompile(`\] done: (\d+)/\d+ \w+ in \| processed (\d+) \| transactions (\d+) committed, \d+ aborted.* \| crashes (\d+) \| restores \d+ \(\d+ records\)\n`)

// runner demo enrich: repartition, table, join and DLQ through a SIGKILL.
func TestDemoEnrich(t *testing.T) {
	demoReport(t, "enrich", 10000, "duplicates:       0", "missing:          0", "wrong customer:   0",
		"DLQ'd:            103 (0 not as expected)")
}

// runner demo dedup: repeats dropped, each event_id once, through a
// repartition, the dedup store's restore after a SIGKILL, and the DLQ.
func TestDemoDedup(t *testing.T) {
	demoReport(t, "dedup", 10000, "events in:        10000 (980 repeat an earlier event_id; 103 malformed)",
		"unique out:       8917", "duplicates:       0", "missing:          0", "DLQ'd:            103 (0 not as expected)")
}

// runner demo revenue: one exact record per closed (customer, window),
// late orders dropped, through a repartition, a window store restored
// after a SIGKILL, and the DLQ.
func TestDemoRevenue(t *testing.T) {
	demoReport(t, "revenue", 10000, "duplicates:       0", "missing:          0", "wrong totals:     0", "unexpected:       0",
		"DLQ'd:            103 (0 not as expected)")
}

// The metrics address serves the probes: /healthz (and /livez) while the
// loop runs, /readyz once the worker is in its group with nothing to
// restore, and /metrics.
func TestRunServesProbes(t *testing.T) {
	addr := startTestBroker(t, 4, "in", "out")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	probes := ln.Addr().String()
	require.NoError(t, ln.Close())
	p := startRunner(t, nil, "run", "passthrough", "--brokers", addr, "--instance", "w1",
		"--metrics-addr", probes, "--session-timeout", "3s", "--input", "in", "--output", "out")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + probes + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			require.Contains(t, body, "ok")
			break
		}
		require.True(t, time.Now().Before(deadline), "/readyz: %d %s; stderr:\n%s", code, body, p.stderr())
		time.Sleep(20 * time.Millisecond) // polling a probe, as Kubernetes does
	}
	for _, path := range []string{"/healthz", "/livez"} {
		code, body := get(path)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "sluice_tasks")
	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), "stderr:\n%s", p.stderr())
}

// runner topics create makes an app's topics: the missing sources and
// sinks with the partitions asked for, and the internal topics; run again,
// it creates nothing; a replication factor the cluster cannot have, or
// sources that are not co-partitioned, stop it with a message that says
// so.
func TestTopicsCreate(t *testing.T) {
	addr := startTestBroker(t, 1, "unrelated")
	p := startRunner(t, nil, "topics", "create", "enrich", "--brokers", addr, "--partitions", "3", "--replication-factor", "1")
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	var created []string
	for l := range p.lines {
		created = append(created, l)
	}
	want := []string{"customers", "enrich-dlq", "enrich-orders-by-customer-repartition", "orders", "orders-enriched"}
	require.Equal(t, want, created)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	details, err := newAdmin(t, addr).ListTopics(ctx, want...)
	require.NoError(t, err)
	for _, topic := range want {
		require.Len(t, details[topic].Partitions, 3, topic)
	}

	p = startRunner(t, nil, "topics", "create", "enrich", "--brokers", addr, "--partitions", "3")
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	for l := range p.lines {
		t.Errorf("created again: %s", l)
	}

	p = startRunner(t, nil, "topics", "create", "passthrough", "--brokers", addr, "--input", "rf-in", "--output", "rf-out", "--replication-factor", "2")
	require.Equal(t, 1, p.wait(t))
	require.Contains(t, p.stderr(), `create topic "rf-in" with replication factor 2: INVALID_REPLICATION_FACTOR`)
	p = startRunner(t, nil, "topics", "create", "passthrough", "--brokers", addr, "--replication-factor", "0")
	require.Equal(t, 2, p.wait(t))
	require.Contains(t, p.stderr(), `--replication-factor 0: need -1 (the brokers' default) or 1 to 32767`)

	addr = startTestBroker(t, 2, "customers")
	p = startRunner(t, nil, "topics", "create", "enrich", "--brokers", addr, "--partitions", "3")
	require.Equal(t, 1, p.wait(t))
	require.Contains(t, p.stderr(), `need the same partition count`)
}

// runner topics create --topics makes the topics named, and none twice;
// started before its broker, as a script that runs "runner broker &"
// does, it waits for the broker.
func TestTopicsCreateList(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	p := startRunner(t, nil, "topics", "create", "--topics", "b,a", "--brokers", addr, "--partitions", "2")
	b := startRunner(t, nil, "broker", "--addr", addr)
	b.waitListening(t)
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	var created []string
	for l := range p.lines {
		created = append(created, l)
	}
	require.Equal(t, []string{"a", "b"}, created)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	details, err := newAdmin(t, addr).ListTopics(ctx, "a", "b")
	require.NoError(t, err)
	for _, topic := range created {
		require.Len(t, details[topic].Partitions, 2, topic)
	}

	p = startRunner(t, nil, "topics", "create", "--topics", "a,c", "--brokers", addr)
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	created = created[:0]
	for l := range p.lines {
		created = append(created, l)
	}
	require.Equal(t, []string{"c"}, created)

	p = startRunner(t, nil, "topics", "create", "--topics", "d", "--brokers", addr, "--replication-factor", "3")
	require.Equal(t, 1, p.wait(t))
	require.Contains(t, p.stderr(), `topic "d": INVALID_REPLICATION_FACTOR`)
	require.Equal(t, 0, b.signal(t, syscall.SIGTERM), "stderr:\n%s", b.stderr())

	p = startRunner(t, nil, "topics", "create", "--topics", "a", "extra")
	require.Equal(t, 2, p.wait(t))
	require.Contains(t, p.stderr(), `unexpected arguments ["extra"]`)
}

// runner reset refuses while a worker runs; once it has stopped, it
// deletes the group and the changelog and removes the local state, and
// the next worker processes the input again from its start.
func TestReset(t *testing.T) {
	addr := startTestBroker(t, 2, "events", "events-unique")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	const n = 50
	for i := range n {
		r := &kgo.Record{Topic: "events", Value: fmt.Appendf(nil, `{"event_id":"e%d"}`, i)}
		require.NoError(t, cl.ProduceSync(ctx, r).FirstErr())
	}
	states := filepath.Join(t.TempDir(), "state", "dedup")
	run := func() *runnerProc {
		return startRunner(t, nil, "run", "dedup", "--brokers", addr, "--instance", "w1", "--state-dir", filepath.Join(states, "w1"),
			"--metrics-addr", "", "--session-timeout", "3s")
	}
	// out waits until events-unique holds want records and returns them.
	out := func(want int) int {
		got := 0
		require.NoError(t, txntest.ReadCommitted(ctx, []string{addr}, "events-unique", func(*kgo.Record) { got++ }, func() bool { return got >= want }))
		return got
	}
	w := run()
	require.Equal(t, n, out(n))

	p := startRunner(t, nil, "reset", "dedup", "--brokers", addr, "--state-dir", states)
	require.Equal(t, 1, p.wait(t))
	require.Contains(t, p.stderr(), "workers of dedup are still running (w1 on")
	require.DirExists(t, states)

	require.Equal(t, 0, w.signal(t, syscall.SIGTERM), "stderr:\n%s", w.stderr())
	p = startRunner(t, nil, "reset", "dedup", "--brokers", addr, "--state-dir", states)
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	var deleted []string
	for l := range p.lines {
		deleted = append(deleted, l)
	}
	require.Equal(t, []string{"dedup-event-ids-changelog", "dedup-events-by-id-repartition"}, deleted)
	require.NoDirExists(t, states)

	w = run() // starts over: every event is new again
	require.Equal(t, 2*n, out(2*n))
	require.Equal(t, 0, w.signal(t, syscall.SIGTERM), "stderr:\n%s", w.stderr())
}

// runner run takes its settings from a config file too, below the
// environment and the command line; --print-config prints them and exits
// 0; an unknown key of the file is a usage error naming it; --help lists
// the new flags with the app's.
func TestRunConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), "w.yaml")
	require.NoError(t, os.WriteFile(config, []byte("brokers: file:9092\ninput: file-in\noutput: file-out\nguarantee: at_most_once\n"), 0o600))
	p := startRunner(t, []string{"SLUICE_INPUT=env-in", "SLUICE_CONFIG=" + config}, "run", "passthrough",
		"--instance", "w1", "--output", "flag-out", "--print-config")
	var out []string
	for l := range p.lines {
		out = append(out, l)
	}
	require.Equal(t, 0, p.wait(t), "stderr:\n%s", p.stderr())
	all := strings.Join(out, "\n")
	for _, want := range []string{"brokers: file:9092 # " + config, "input: env-in # SLUICE_INPUT", "output: flag-out # flag",
		"guarantee: at_most_once # " + config, "app-id: passthrough # default", "state-dir: state/passthrough/w1 # default"} {
		require.Contains(t, all, want)
	}

	require.NoError(t, os.WriteFile(config, []byte("brokers: a:1\ninptu: x\n"), 0o600))
	p = startRunner(t, nil, "run", "passthrough", "--config", config)
	require.Equal(t, 2, p.wait(t))
	require.Contains(t, p.stderr(), `runner: run passthrough: config file `+config+`: line 2: unknown key "inptu"`)
	require.Contains(t, p.stderr(), "runner run APP [--brokers", "a usage error is followed by the usage")

	p = startRunner(t, nil, "run", "passthrough", "--help")
	out = nil
	for l := range p.lines {
		out = append(out, l)
	}
	require.Equal(t, 0, p.wait(t))
	all = strings.Join(out, "\n")
	for _, want := range []string{"[--config FILE] [--log-level info] [--log-format text|json]", "Flags of runner run passthrough:",
		"-print-config", "-log-format value", "-input string"} {
		require.Contains(t, all, want)
	}
}
