// Package service turns a topology into a worker program: the main
// function that `runner run` uses, for a topology of your own.
//
//	func main() {
//		service.Main(service.App{
//			Name: "orders-app",
//			Flags: func(fs *flag.FlagSet) func(appID string) (*stream.Topology, error) {
//				input := fs.String("input", "orders", "source topic")
//				return func(appID string) (*stream.Topology, error) { return build(appID, *input) }
//			},
//		})
//	}
//
// Main (or Run, which returns instead of exiting) does what every worker
// needs and nothing topology-specific:
//
//   - settings: the worker's flags (--brokers, --app-id, --instance,
//     --state-dir, --state-flush-writes, --guarantee, --commit-interval,
//     --max-batch-records, --lanes, --session-timeout,
//     --transaction-timeout, --replication-factor, --metrics-addr,
//     --advertise-addr, --log-level, --log-format) and the app's own;
//   - a logger (log/slog, text or JSON, on stderr) that the worker logs to;
//   - a Prometheus registry with the worker's metrics and Go and process
//     collectors, served with the probes on --metrics-addr (Handler);
//   - txn.NewWorker and Worker.Run, until SIGINT or SIGTERM
//     (SignalContext), then a graceful stop;
//   - exit codes: 0 clean stop, 1 fatal error, 2 usage error.
//
// # Settings
//
// Every setting, the worker's and the app's, is a flag, an environment
// variable SLUICE_<FLAG> (--app-id: SLUICE_APP_ID, EnvName) and a key of
// an optional YAML config file named by --config (or SLUICE_CONFIG),
// whose keys are the flag names:
//
//	brokers: kafka-1:9092,kafka-2:9092
//	guarantee: exactly_once
//	input: orders
//
// The command line wins over the environment, which wins over the file,
// which wins over the default. A key of the file that names no setting
// is an error that names it (exit 2), as is a value that does not parse,
// wherever it comes from, and so is a value no worker can run with
// (--max-batch-records 0, a --transaction-timeout shorter than
// --commit-interval), naming the flag, the value and where it came from.
// A SLUICE_ variable that names no setting is
// logged as a warning and ignored, not an error: one environment often
// serves several programs (runner broker's SLUICE_DATA_DIR, another app's
// SLUICE_INPUT). --print-config prints the effective settings as a config
// file, each with where its value came from, and exits 0 without
// connecting anywhere.
//
// docs/config.md lists the worker's settings; a test keeps it true.
//
// # Client options
//
// What has no setting, TLS and SASL for a real cluster above all, is a
// franz-go option, which App.Configure adds to txn.Config.ClientOpts once
// the settings are resolved (ExampleApp_configure):
//
//	Configure: func(cfg *txn.Config) error {
//		cfg.ClientOpts = append(cfg.ClientOpts,
//			kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}),
//			kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
//		return nil
//	},
package service
