package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn/service"
)

// runUsage is the run entry of CONTRACT.md.
const runUsage = `runner run APP [--brokers 127.0.0.1:9092] [--app-id ID] [--instance ID]
               [--state-dir DIR] [--guarantee exactly_once|at_least_once|at_most_once]
               [--commit-interval 100ms] [--session-timeout 10s]
               [--metrics-addr 127.0.0.1:9100] [--advertise-addr HOST:PORT]
               [--config FILE] [--log-level info] [--log-format text|json]
               [--print-config]
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
    metrics off. It also serves GET /stores/{store}/{key}, a query of the
    app's stores; a key another worker holds redirects to that worker's
    --advertise-addr (HOST:PORT at which others reach its --metrics-addr).
    --config FILE (or SLUICE_CONFIG) is YAML keyed by flag name, APP's own
    flags included; a flag wins over its SLUICE_ variable, which wins over
    the file. An unknown key is a usage error; a SLUICE_ variable that
    names no flag is logged and ignored. --print-config prints the
    effective settings as such a file and exits 0. Logs go to stderr.
`

var runCommand = command{
	name:    "run",
	summary: "run one worker of an example app",
	usage:   runUsage,
	run:     runRun,
}

// lookupApp returns the app args[0] names, for the commands that take
// `APP [flags]`.
func lookupApp(name string, args []string) (examples.App, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return examples.App{}, flag.ErrHelp
		}
		return examples.App{}, usageErrorf("runner: %s: missing APP (one of: %s)", name, appNames())
	}
	app, ok := examples.Lookup(args[0])
	if !ok {
		return examples.App{}, usageErrorf("runner: %s: unknown app %q (one of: %s)", name, args[0], appNames())
	}
	return app, nil
}

// parseApp parses `APP [flags]` for describe, topics create and reset:
// the app name, then the command's flags and the app's own on one flag
// set.
func parseApp(name string, args []string, register func(*flag.FlagSet)) (examples.App, func(string) (*stream.Topology, error), error) {
	app, err := lookupApp(name, args)
	if err != nil {
		return app, nil, err
	}
	fs := flag.NewFlagSet(name+" "+app.Name, flag.ContinueOnError)
	if register != nil {
		register(fs)
	}
	build := app.Flags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return app, nil, &helpError{more: appFlags(name, app, b.String())}
		}
		return app, nil, err
	}
	if fs.NArg() > 0 {
		return app, nil, usageErrorf("runner: %s: unexpected arguments %q", name, fs.Args())
	}
	return app, build, nil
}

// appFlags is the part of a command's help that lists its flags with
// APP's.
func appFlags(name string, app examples.App, flags string) string {
	return fmt.Sprintf("\nFlags of runner %s %s:\n%s", name, app.Name, flags)
}

func appNames() string {
	var names []string
	for _, a := range examples.All() {
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}

// runRun runs a worker of an example app with service.Run, the worker
// main any program can use; its messages start "runner: run APP:".
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app, err := lookupApp("run", args)
	if err != nil {
		return err
	}
	err = service.Run(ctx, service.App{Name: app.Name, Flags: app.Flags}, args[1:], stdout, stderr)
	if help, ok := errors.AsType[*service.HelpError](err); ok {
		return &helpError{more: appFlags("run", app, help.Flags)}
	}
	if _, ok := errors.AsType[*service.UsageError](err); ok {
		return &usageError{fmt.Errorf("runner: run %w", err)}
	}
	if err != nil {
		return fmt.Errorf("runner: run %w", err)
	}
	return nil
}
