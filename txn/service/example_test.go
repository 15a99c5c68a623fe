package service_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ordersApp is a topology of one's own with one setting of its own: the
// orders of at least --min-cents go to --output.
var ordersApp = service.App{
	Name: "orders-app",
	Flags: func(fs *flag.FlagSet) func(appID string) (*stream.Topology, error) {
		input := fs.String("input", "orders", "source topic")
		output := fs.String("output", "large-orders", "sink topic")
		minCents := fs.Int64("min-cents", 10_000, "smallest amount that makes an order large")
		return func(appID string) (*stream.Topology, error) {
			b := stream.NewBuilder(appID)
			stream.From(b, *input, serde.String, serde.Int64).
				Filter(func(_ string, cents int64) bool { return cents >= *minCents }).
				To(*output, serde.String, serde.Int64)
			return b.Build()
		}
	},
}

// A worker program's main is one call. The program then takes the
// worker's flags (--brokers, --instance, ...) and the app's (--input,
// --output, --min-cents), each also as SLUICE_<FLAG> and as a key of a
// --config file, serves metrics and probes, and stops cleanly on SIGTERM.
func ExampleMain() {
	service.Main(ordersApp) // exits
}

// Configure adds what has no setting, such as TLS and SASL for a real
// cluster, as franz-go options. The app registers the settings it needs
// (--sasl-user, --sasl-password-file) with its own flags, which Configure
// reads: they are set by the time it runs. The password comes from a file
// rather than a setting, since --print-config prints the settings.
func ExampleApp_configure() {
	var user, passwordFile *string
	app := ordersApp
	flags := app.Flags
	app.Flags = func(fs *flag.FlagSet) func(appID string) (*stream.Topology, error) {
		user = fs.String("sasl-user", "", "SCRAM-SHA-512 user; empty: no SASL")
		passwordFile = fs.String("sasl-password-file", "/run/secrets/kafka-password", "file holding the SASL password")
		return flags(fs)
	}
	app.Configure = func(cfg *txn.Config) error {
		cfg.ClientOpts = append(cfg.ClientOpts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
		if *user == "" {
			return nil
		}
		password, err := os.ReadFile(*passwordFile)
		if err != nil {
			return &service.UsageError{Err: fmt.Errorf("--sasl-password-file: %w", err)}
		}
		cfg.ClientOpts = append(cfg.ClientOpts,
			kgo.SASL(scram.Auth{User: *user, Pass: strings.TrimSpace(string(password))}.AsSha512Mechanism()))
		return nil
	}
	service.Main(app) // exits
}

// Run is Main without the exit: --print-config shows every setting in
// effect, as a config file, with where its value came from.
func ExampleRun() {
	// --lanes is given because its default depends on the machine.
	args := []string{"--instance", "worker-1", "--brokers", "kafka-1:9092", "--lanes", "4", "--min-cents", "500", "--print-config"}
	if err := service.Run(context.Background(), ordersApp, args, os.Stdout, os.Stderr); err != nil {
		fmt.Println(err)
	}
	// Output:
	// # comma-separated seed brokers
	// brokers: kafka-1:9092 # flag
	// # application id: consumer group, transactional id and internal topic prefix (default: APP)
	// app-id: orders-app # default
	// # stable id of this worker: static group member id, transactional id <app-id>-<instance> (default: hostname)
	// instance: worker-1 # flag
	// # local state directory: the stores of this worker's tasks (default: ./state/<app-id>/<instance>)
	// state-dir: state/orders-app/worker-1 # default
	// # committed state writes a task holds in memory at most before flushing them to disk: bounds the changelog replay after a crash
	// state-flush-writes: "100000" # default
	// # exactly_once, at_least_once or at_most_once
	// guarantee: exactly_once # default
	// # longest a transaction collects records
	// commit-interval: 100ms # default
	// # most input records one transaction covers
	// max-batch-records: "20000" # default
	// # goroutines that process a batch's records, each task always on the same one (default: GOMAXPROCS, at most 8)
	// lanes: "4" # flag
	// # group session timeout: how long a dead worker's partitions wait before they move
	// session-timeout: 10s # default
	// # how long the broker lets a transaction stay open before it aborts it: bounds how long a dead worker's open transaction holds up read_committed readers; at most the brokers' transaction.max.timeout.ms (default: --session-timeout)
	// transaction-timeout: 10s # default
	// # replication factor of the internal topics the worker creates (changelog, repartition, DLQ); -1: the brokers' default
	// replication-factor: "-1" # default
	// # serve Prometheus metrics, the probes and interactive queries on this address; empty: off
	// metrics-addr: 127.0.0.1:9100 # default
	// # host:port at which other workers and clients reach this worker's --metrics-addr, published to the group: a query of a key another worker holds redirects there; empty: none
	// advertise-addr: "" # default
	// # debug, info, warn or error
	// log-level: info # default
	// # text or json (log/slog's handlers, on stderr)
	// log-format: text # default
	// # The settings of orders-app itself.
	//
	// # source topic
	// input: orders # default
	// # smallest amount that makes an order large
	// min-cents: "500" # flag
	// # sink topic
	// output: large-orders # default
}
