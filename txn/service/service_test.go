package service

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// passthroughApp copies --input to --output.
var passthroughApp = App{
	Name: "copier",
	Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
		in := fs.String("input", "in", "source topic")
		out := fs.String("output", "out", "sink topic")
		return func(appID string) (*stream.Topology, error) { return passthrough.Build(appID, *in, *out) }
	},
}

// logLine waits for the first JSON log line with message msg and returns
// it decoded.
func logLine(t *testing.T, log *txntest.SyncBuffer, msg string, done <-chan error) map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		for l := range strings.Lines(log.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
				return rec
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before logging %q; log:\n%s", err, msg, log)
		default:
		}
		require.True(t, time.Now().Before(deadline), "no %q in the log:\n%s", msg, log)
		time.Sleep(10 * time.Millisecond) // polling a log, as the test above does a probe
	}
}

// Run runs a worker with the settings it is given: it copies its input
// exactly once, serves its probes and metrics, logs in the format asked
// for, warns of stray SLUICE_ variables and stops cleanly when ctx is
// cancelled. It reads the process environment, so the test is not
// parallel.
func TestRun(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, []string{addr}, 4, "src", "dst"))
	t.Setenv("SLUICE_OUTPUT", "dst")
	t.Setenv("SLUICE_BROKER", "a typo")
	config := writeFile(t, "input: src\nsession-timeout: 3s\n")

	var log txntest.SyncBuffer
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, passthroughApp, []string{"--brokers", addr, "--instance", "w1", "--config", config,
			"--state-dir", filepath.Join(t.TempDir(), "w1"), "--metrics-addr", "127.0.0.1:0", "--log-format", "json"},
			io.Discard, &log)
	}()

	stray := logLine(t, &log, "ignoring an environment variable that sets no setting", done)
	require.Equal(t, "SLUICE_BROKER", stray["var"])
	probes := logLine(t, &log, ServingMessage, done)["addr"].(string)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + probes + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}

	const n = 500
	require.NoError(t, txntest.Produce(ctx, []string{addr}, "src", 0, n, 10, 20))
	rep, err := txntest.Verify(ctx, []string{addr}, "dst", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s; log:\n%s", rep, &log)
	code, body := get("/readyz")
	require.Equal(t, http.StatusOK, code, body)
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	// Records of aborted transactions count too: at least n.
	m := regexp.MustCompile(`(?m)^sluice_records_processed_total\{app="copier",instance="w1"\} (\d+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, body)
	processed, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.GreaterOrEqual(t, processed, n)
	require.Contains(t, body, "go_goroutines")

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatalf("Run did not return after its context was cancelled; log:\n%s", &log)
	}
	logLine(t, &log, "worker stopped", done)
	_, err = http.Get("http://" + probes + "/healthz")
	require.Error(t, err, "the probes stop with Run")
}

// A fatal error at start is neither a usage error nor help: exit 1.
func TestRunMissingTopic(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = Run(ctx, passthroughApp, []string{"--brokers", addr, "--instance", "w1", "--state-dir", t.TempDir(),
		"--metrics-addr", "", "--input", "nope"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, `copier: `)
	require.ErrorContains(t, err, `source topic "nope" does not exist`)
	var stderr strings.Builder
	require.Equal(t, 1, exit(err, "copier", io.Discard, &stderr))
	require.Equal(t, err.Error()+"\n", stderr.String())
}

// --print-config writes its file to stdout and neither builds the
// topology nor connects.
func TestRunPrintConfig(t *testing.T) {
	var out strings.Builder
	require.NoError(t, Run(t.Context(), testApp, []string{"--instance", "w1", "--brokers", "nowhere:1", "--print-config"}, &out, io.Discard))
	require.Contains(t, out.String(), "brokers: nowhere:1 # flag\n")
	require.Contains(t, out.String(), "input: orders # default\n")
}

// The probes answer 503 with the reason before the worker runs; /metrics
// serves the registry given.
func TestHandler(t *testing.T) {
	topo, err := passthrough.Build("copier", "in", "out")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	w, err := txn.NewWorker(topo, txn.Config{Brokers: []string{"127.0.0.1:1"}, Instance: "w1", StateDir: t.TempDir(), Registerer: reg})
	require.NoError(t, err)
	srv := httptest.NewServer(Handler(w, reg))
	defer srv.Close()
	for _, path := range []string{"/healthz", "/livez", "/readyz"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
		require.Equal(t, "not running\n", string(body), path)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "sluice_tasks")
}

// Configure gets the config the settings give, logger and registerer
// included, and the options it adds reach every client of the worker:
// here the broker's address, which --brokers does not give, so that the
// worker copies its input only if they do.
func TestConfigure(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(t, broker.CreateTopics(ctx, []string{addr}, 2, "in", "out"))
	t.Setenv("SLUICE_MAX_BATCH_RECORDS", "700")

	var got txn.Config
	calls := 0
	app := passthroughApp
	app.Configure = func(cfg *txn.Config) error {
		calls++
		got = *cfg
		cfg.ClientOpts = append(cfg.ClientOpts, kgo.SeedBrokers(addr))
		return nil
	}
	var log txntest.SyncBuffer
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, app, []string{"--brokers", "127.0.0.1:1", "--instance", "w1", "--state-dir", filepath.Join(t.TempDir(), "w1"),
			"--metrics-addr", "", "--session-timeout", "3s", "--transaction-timeout", "7s", "--replication-factor", "1"}, io.Discard, &log)
	}()

	const n = 200
	require.NoError(t, txntest.Produce(ctx, []string{addr}, "in", 0, n, 10, 20))
	rep, err := txntest.Verify(ctx, []string{addr}, "out", n)
	require.NoError(t, err)
	require.True(t, rep.Clean(), "%s; log:\n%s", rep, &log)
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatalf("Run did not return after its context was cancelled; log:\n%s", &log)
	}
	require.Equal(t, 1, calls)
	require.Equal(t, []string{"127.0.0.1:1"}, got.Brokers)
	require.Equal(t, "w1", got.Instance)
	require.Equal(t, 700, got.MaxBatchRecords)
	require.Equal(t, 3*time.Second, got.SessionTimeout)
	require.Equal(t, 7*time.Second, got.TransactionTimeout)
	require.Equal(t, 1, got.ReplicationFactor)
	require.NotNil(t, got.Logger)
	require.NotNil(t, got.Registerer)
	require.Empty(t, got.ClientOpts)
}

// An error from Configure stops Run before the worker connects, prefixed
// with the app's name: a fatal error, or a usage error when it is one.
// --help and --print-config do not call Configure.
func TestConfigureErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		code int
	}{
		{"fatal", errors.New("no certificate in /etc/tls"), 1},
		{"usage", &UsageError{Err: errors.New("--sasl-user: unknown user")}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			app := testApp
			app.Flags = passthroughApp.Flags
			app.Configure = func(*txn.Config) error { return tt.err }
			// No broker listens there: a worker that tried to connect
			// would only return at the deadline, with no error.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := Run(ctx, app, []string{"--brokers", "127.0.0.1:1", "--instance", "w1", "--state-dir", t.TempDir(), "--metrics-addr", ""},
				io.Discard, io.Discard)
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, "orders-app: "+tt.err.Error(), err.Error())
			require.Equal(t, tt.code, exit(err, "orders", io.Discard, io.Discard))
		})
	}
	app := testApp
	app.Configure = func(*txn.Config) error {
		t.Error("Configure called")
		return nil
	}
	require.NoError(t, Run(t.Context(), app, []string{"--instance", "w1", "--print-config"}, io.Discard, io.Discard))
	require.ErrorIs(t, Run(t.Context(), app, []string{"--help"}, io.Discard, io.Discard), flag.ErrHelp)
}
