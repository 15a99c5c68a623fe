package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn"
)

// runUsage is the run entry of CONTRACT.md.
const runUsage = `runner run APP [--brokers 127.0.0.1:9092] [--app-id ID] [--instance ID]
               [--state-dir DIR] [--guarantee exactly_once|at_least_once|at_most_once]
               [--commit-interval 100ms] [--session-timeout 10s]
               [--metrics-addr 127.0.0.1:9100]
               [APP's own flags]
    One worker of APP. Workers with the same --app-id (default: APP) form one
    consumer group; --app-id also prefixes the transactional id and the
    internal topics. --instance (default: hostname) must be stable across
    restarts of the same worker; the transactional id is <app-id>-<instance>
    and the static group membership id is <instance>, so a restarted worker
    takes its partitions back without a rebalance. --session-timeout
    (default 10s) bounds how long a dead, not-restarted worker's partitions
    wait before they move.
    --state-dir default: ./state/<app-id>/<instance>.
    Creates missing internal topics (changelog, repartition, DLQ); fails
    with a clear error when a source topic is missing. Env vars
    SLUICE_<FLAG> (e.g. SLUICE_BROKERS) set any flag.
    SIGINT/SIGTERM: finish or abort the open transaction, checkpoint stores,
    leave the group, exit 0.
    Run "runner apps" for the apps and "runner describe APP" for a topology;
    an --metrics-addr that cannot be bound only logs a warning, and "" turns
    metrics off.
`

var runCommand = command{
	name:    "run",
	summary: "run one worker of an example app",
	usage:   runUsage,
	run:     runRun,
}

// workerFlags are the flags of runner run, before the app's own.
type workerFlags struct {
	brokers        string
	appID          string
	instance       string
	stateDir       string
	guarantee      string
	commitInterval time.Duration
	sessionTimeout time.Duration
	metricsAddr    string
}

func (f *workerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	fs.StringVar(&f.appID, "app-id", "", "application id: consumer group, transactional id and internal topic prefix (default: APP)")
	fs.StringVar(&f.instance, "instance", "", "stable id of this worker (default: hostname)")
	fs.StringVar(&f.stateDir, "state-dir", "", "local state directory (default: ./state/<app-id>/<instance>)")
	fs.StringVar(&f.guarantee, "guarantee", "exactly_once", "exactly_once, at_least_once or at_most_once")
	fs.DurationVar(&f.commitInterval, "commit-interval", 100*time.Millisecond, "longest a transaction collects records")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 10*time.Second, "group session timeout")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9100", "serve Prometheus metrics on this address; empty: off")
}

// parseApp parses `APP [flags]` for run and describe: the app name, then
// the shared flags and the app's own on one flag set.
func parseApp(name string, args []string, register func(*flag.FlagSet)) (examples.App, func(string) (*stream.Topology, error), error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return examples.App{}, nil, flag.ErrHelp
		}
		return examples.App{}, nil, usageErrorf("runner: %s: missing APP (one of: %s)", name, appNames())
	}
	app, ok := examples.Lookup(args[0])
	if !ok {
		return examples.App{}, nil, usageErrorf("runner: %s: unknown app %q (one of: %s)", name, args[0], appNames())
	}
	fs := flag.NewFlagSet(name+" "+app.Name, flag.ContinueOnError)
	if register != nil {
		register(fs)
	}
	build := app.Flags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return app, nil, err
	}
	if fs.NArg() > 0 {
		return app, nil, usageErrorf("runner: %s: unexpected arguments %q", name, fs.Args())
	}
	return app, build, nil
}

func appNames() string {
	var names []string
	for _, a := range examples.All() {
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f workerFlags
	app, build, err := parseApp("run", args, f.register)
	if err != nil {
		return err
	}
	guarantee, err := txn.ParseGuarantee(f.guarantee)
	if err != nil {
		return usageErrorf("runner: run: --guarantee: %v", err)
	}
	if f.appID == "" {
		f.appID = app.Name
	}
	if f.instance == "" {
		if f.instance, err = os.Hostname(); err != nil || f.instance == "" {
			return errors.New("runner: run: no --instance and no hostname: pass --instance")
		}
	}
	if f.stateDir == "" {
		f.stateDir = filepath.Join("state", f.appID, f.instance)
	}
	topo, err := build(f.appID)
	if err != nil {
		return fmt.Errorf("runner: run %s: %w", app.Name, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if f.metricsAddr != "" {
		serveMetrics(ctx, f.metricsAddr, reg, log)
	}
	w, err := txn.NewWorker(topo, txn.Config{
		Brokers:        strings.Split(f.brokers, ","),
		Instance:       f.instance,
		StateDir:       f.stateDir,
		Guarantee:      guarantee,
		CommitInterval: f.commitInterval,
		SessionTimeout: f.sessionTimeout,
		Logger:         log,
		Registerer:     reg,
	})
	if err != nil {
		return usageErrorf("runner: run: %v", err)
	}
	if err := w.Run(ctx); err != nil {
		return fmt.Errorf("runner: run %s: %w", app.Name, err)
	}
	log.Info("worker stopped")
	return nil
}

// serveMetrics serves /metrics until ctx is done. A port that cannot be
// bound is a warning, not a failure: several local workers share a host.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("metrics off: cannot listen", "addr", addr, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	log.Info("serving metrics", "addr", ln.Addr().String())
}
