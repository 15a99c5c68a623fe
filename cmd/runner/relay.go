package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/txn/outbox"
)

// relayUsage is the outbox relay's entry, beside the sink's.
const relayUsage = `runner relay postgres [--brokers 127.0.0.1:9092] --postgres CONN
               [--name outbox] [--table sluice_outbox] [--topic TOPIC]
               [--cursor-topic sluice-outbox-cursors] [--key-order]
               [--max-batch 5000] [--poll-interval 100ms]
               [--transaction-timeout 10s] [--log-level info]
    An outbox relay (package txn/outbox): reads the rows applications
    write to the outbox table (--table, created when missing) in their own
    database transactions, in the order of their transaction ids, only
    below the oldest transaction still running (so a row committed late by
    an older transaction is never skipped), and produces each batch to
    Kafka in ONE Kafka transaction with the relay's cursor, kept in the
    compacted topic --cursor-topic under the key --name. The transactional
    id is sluice-outbox-<name>: a restarted relay fences the one it
    replaces; one relay per name runs at a time (a relay that another of
    its name took over stops, exit 1). A row's topic column (or --topic
    when it is NULL) says where it goes. Relayed rows are deleted in bulk
    behind the committed cursor. --key-order: the table's writers check
    per-key order (see docs/beyond-kafka.md). SIGINT/SIGTERM: a commit
    under way is waited for, a batch being produced is aborted, exit 0.
`

var relayCommand = command{
	name:    "relay",
	summary: "an outbox relay: rows of a Postgres outbox table into Kafka, each batch and its cursor in one transaction",
	usage:   relayUsage,
	run:     runRelay,
}

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErrorf("runner: relay: missing the kind of relay: postgres")
	}
	if args[0] != "postgres" {
		return usageErrorf("runner: relay: unknown kind of relay %q: postgres is the one there is", args[0])
	}
	fs := flag.NewFlagSet("relay postgres", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	conn := fs.String("postgres", "", "Postgres connection string (URL or key=value pairs; required)")
	name := fs.String("name", "outbox", "the relay's name: its cursor's key and transactional id sluice-outbox-<name>")
	table := fs.String("table", outbox.DefaultTable, "the outbox table (name or schema.name)")
	topic := fs.String("topic", "", "topic of the rows whose topic column is NULL (default: none, such a row stops the relay)")
	cursorTopic := fs.String("cursor-topic", outbox.DefaultCursorTopic, "compacted topic of the relay's cursor")
	keyOrder := fs.Bool("key-order", false, "the table's writers check key order: create and clean its key table")
	maxBatch := fs.Int("max-batch", 5000, "most rows in one Kafka transaction")
	poll := fs.Duration("poll-interval", 100*time.Millisecond, "pause after a read that found nothing to relay")
	txnTimeout := fs.Duration("transaction-timeout", 10*time.Second, "Kafka transaction timeout")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("runner: relay postgres: unexpected arguments %q", fs.Args())
	}
	if *conn == "" {
		return usageErrorf("runner: relay postgres: --postgres is required (e.g. postgres://user@host/db, or SLUICE_POSTGRES)")
	}
	if _, err := pgxpool.ParseConfig(*conn); err != nil {
		return usageErrorf("runner: relay postgres: --postgres: %v", err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageErrorf("runner: relay postgres: --log-level: %v", err)
	}
	cfg := outbox.Config{
		Brokers: strings.Split(*brokers, ","), Name: *name, Postgres: *conn, Table: *table, KeyOrder: *keyOrder,
		Topic: *topic, CursorTopic: *cursorTopic, MaxBatchRows: *maxBatch, PollInterval: *poll,
		TransactionTimeout: *txnTimeout,
		Logger:             slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})),
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	r, err := outbox.New(cfg)
	if err != nil {
		return fmt.Errorf("runner: relay postgres: %w", err)
	}
	dest := "each row's topic"
	if *topic != "" {
		dest += " (NULL: " + *topic + ")"
	}
	fmt.Fprintf(stdout, "relay %s: table %s -> %s, cursor in %s\n", *name, *table, dest, *cursorTopic)
	if err := r.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("runner: relay postgres: %w", err)
	}
	return nil
}
