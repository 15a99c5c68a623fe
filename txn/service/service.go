package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn"
)

// App is a topology together with its own settings: what a worker program
// runs. It has the shape of examples.App, so the example apps run as they
// are.
type App struct {
	// Name is the app id by default (--app-id) and starts every message
	// the program prints. Required.
	Name string
	// Flags registers the app's own flags on fs (topic names, window
	// sizes: what the topology is built from) and returns the function
	// that builds the topology once they are set. Each flag is settable
	// the same three ways as the worker's: on the command line, as
	// SLUICE_<FLAG> and as a key of the config file. Flags runs once per
	// Run; build is called at most once, with the app id, after every
	// setting is resolved. Required.
	Flags func(fs *flag.FlagSet) (build func(appID string) (*stream.Topology, error))
	// Configure, when set, adjusts the worker's configuration before the
	// worker is made: it adds what has no setting, franz-go options above
	// all (cfg.ClientOpts: TLS, SASL, a dialer; see the package
	// documentation). Run calls it once, after every setting is resolved
	// and the topology built, with the txn.Config they give, logger and
	// metrics registerer included; what it changes wins over the
	// settings, and --print-config does not show it. It is not called for
	// --help or --print-config. It may read the app's own flags (those
	// Flags registered are set by then). An error stops Run, prefixed
	// with Name: a fatal error (exit 1), or a usage error (exit 2) when
	// it is, or wraps, a *UsageError.
	Configure func(cfg *txn.Config) error
}

// UsageError is a setting a worker program cannot act on: an unknown
// flag, a value that does not parse (on the command line, in a SLUICE_
// variable or in the config file), an unknown key or an unreadable config
// file, or a configuration txn.NewWorker rejects. Run returns it; Main
// prints it and exits 2. Find it with errors.As.
type UsageError struct{ Err error }

// Error returns the message of the underlying error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// HelpError is what Run returns for -h or --help: a request, not a
// failure. It unwraps to flag.ErrHelp.
type HelpError struct {
	// Flags lists the program's flags, the worker's and the app's, as
	// flag.PrintDefaults writes them.
	Flags string
}

// Error returns flag.ErrHelp's message.
func (*HelpError) Error() string { return flag.ErrHelp.Error() }

// Unwrap returns flag.ErrHelp.
func (*HelpError) Unwrap() error { return flag.ErrHelp }

// Main is the whole main function of a worker program: it runs app with
// the process's arguments and environment until SIGINT or SIGTERM, and
// exits. See the package documentation for what it does.
//
// It exits 0 after a clean stop (a signal, then the open transaction
// finished or aborted and the group left), after --help (printed on
// stdout) and after --print-config; 1 after a fatal error, printed on
// stderr; 2 after a *UsageError, printed on stderr. A second signal kills
// the process at once.
func Main(app App) {
	ctx, stop := SignalContext(context.Background())
	err := Run(ctx, app, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exit(err, filepath.Base(os.Args[0]), os.Stdout, os.Stderr))
}

// exit prints what Run's err calls for and returns the exit code.
func exit(err error, program string, stdout, stderr io.Writer) int {
	var usage *UsageError
	var help *HelpError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		fmt.Fprintf(stdout, "Usage: %s [flags]\n\nEvery flag is also set by SLUICE_<FLAG> (--app-id: SLUICE_APP_ID) and by\na key of the --config file (app-id: ID); flag > environment > file.\n\nFlags:\n%s", program, help.Flags)
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%v\nRun %s --help for the flags.\n", err, program)
		return 2
	default:
		fmt.Fprintln(stderr, err)
		return 1
	}
}

// SignalContext returns a context cancelled by the first SIGINT or
// SIGTERM, as signal.NotifyContext does. That first signal also restores
// the default handling, so a second one kills the process at once: the
// way out of a shutdown that hangs. Call stop to release the signals.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// Run runs one worker of app until ctx is cancelled, with its settings
// from args (the command line without the program's name), the process
// environment and the config file. It logs to stderr and writes
// --print-config's output to stdout.
//
// It returns nil after a clean stop (ctx cancelled: the open transaction
// finished or aborted, stores checkpointed, the group left) and after
// --print-config; a *HelpError for --help; a *UsageError for settings it
// cannot act on; any other error for a fatal failure (a missing source
// topic, a fenced instance, a record under the fail policy). The messages
// of usage and fatal errors start with app.Name (an App without Name or
// Flags gets one that starts "service:").
//
// Run reads the process environment, so tests that set SLUICE_ variables
// must not run in parallel with other Runs.
func Run(ctx context.Context, app App, args []string, stdout, stderr io.Writer) error {
	p, err := parse(app, args, os.Environ())
	if err != nil {
		return err
	}
	if p.printConfig {
		return p.writeConfig(stdout)
	}
	log := p.logger(stderr)
	for _, name := range p.strayEnv {
		log.Warn("ignoring an environment variable that sets no setting", "var", name)
	}
	topo, err := p.build(p.appID)
	if err != nil {
		return fmt.Errorf("%s: %w", app.Name, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := p.workerConfig()
	cfg.Logger, cfg.Registerer = log, reg
	if app.Configure != nil {
		if err := app.Configure(&cfg); err != nil {
			return fmt.Errorf("%s: %w", app.Name, err)
		}
	}
	w, err := txn.NewWorker(topo, cfg)
	if err != nil {
		return &UsageError{fmt.Errorf("%s: %w", app.Name, err)}
	}
	if p.metricsAddr != "" {
		defer serve(p.metricsAddr, Handler(w, reg), log)()
	}
	if err := w.Run(ctx); err != nil {
		return fmt.Errorf("%s: %w", app.Name, err)
	}
	log.Info("worker stopped")
	return nil
}

// logger returns the logger --log-level and --log-format ask for.
func (p *parsed) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: p.logLevel}
	if p.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
