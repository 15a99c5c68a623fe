package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/examples/dedup"
	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/pgsink"
)

// sinkUsage is the sink entry of CONTRACT.md, with the flags its issue
// defines.
const sinkUsage = `runner sink postgres APP [--brokers 127.0.0.1:9092] --postgres CONN
               [--group ID] [--instance ID] [--topic TOPIC] [--table NAME]
               [--on-error dlq|skip|fail] [--max-batch 5000]
               [--session-timeout 10s] [--log-level info]
    A Postgres sink for APP's output topic: a consumer group (--group,
    default APP-sink) that reads it with read_committed and writes each
    batch, with its offsets, in ONE database transaction, exactly once
    (package txn/pgsink). It resumes from the offsets table
    sluice_sink_offsets, not from Kafka's committed offsets; a per-partition
    epoch fences a zombie instance. --instance (default: hostname) is the
    static group membership id. Creates its tables when missing:
      revenue      revenue-per-minute -> revenue_per_minute
                   (customer_id, window_start) primary key, upserted
      dedup        events-unique -> events (event_id primary key,
                   --id-field as the app's; first write wins)
      enrich       orders-enriched -> orders_enriched (order_id primary key)
      passthrough  out -> records ((topic, partition, record_offset) key)
    Records that do not decode go, by --on-error, to the table
    sluice_sink_dead_letters (same transaction), are skipped, or stop the
    sink naming topic/partition/offset. SIGINT/SIGTERM: the open batch is
    rolled back, exit 0.
`

var sinkCommand = command{
	name:    "sink",
	summary: "a Postgres sink for an app's output: each batch and its offsets in one database transaction",
	usage:   sinkUsage,
	run:     runSink,
}

// sinkApp is how one example app's output lands in Postgres.
type sinkApp struct {
	topic, table string
	// flags registers the app's own flags and returns the function that
	// makes the sink once they are parsed.
	flags func(fs *flag.FlagSet) func(cfg pgsink.Config, table string) (sinkRunner, error)
}

// sinkRunner is a sink ready to run (a *pgsink.Sink of some key and value
// types).
type sinkRunner interface {
	Run(ctx context.Context) error
}

var sinkApps = map[string]sinkApp{
	"revenue": {topic: "revenue-per-minute", table: "revenue_per_minute",
		flags: func(*flag.FlagSet) func(pgsink.Config, string) (sinkRunner, error) {
			return func(cfg pgsink.Config, table string) (sinkRunner, error) {
				return rowSink(cfg, table, serde.String, serde.JSON[revenue.Result](), `CREATE TABLE IF NOT EXISTS %s (
					customer_id   text        NOT NULL,
					window_start  timestamptz NOT NULL,
					window_end    timestamptz NOT NULL,
					orders        bigint      NOT NULL,
					revenue_cents bigint      NOT NULL,
					PRIMARY KEY (customer_id, window_start))`,
					`INSERT INTO %s (customer_id, window_start, window_end, orders, revenue_cents)
					VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, window_start) DO UPDATE
					SET window_end = EXCLUDED.window_end, orders = EXCLUDED.orders, revenue_cents = EXCLUDED.revenue_cents`,
					func(r pgsink.Record[string, revenue.Result]) []any {
						v := r.Value
						return []any{v.CustomerID, v.WindowStart, v.WindowEnd, v.Orders, v.RevenueCents}
					})
			}
		}},
	"dedup": {topic: "events-unique", table: "events",
		flags: func(fs *flag.FlagSet) func(pgsink.Config, string) (sinkRunner, error) {
			id := fs.String("id-field", "event_id", "the JSON field that identifies an event (as the app's)")
			return func(cfg pgsink.Config, table string) (sinkRunner, error) {
				return rowSink(cfg, table, serde.Bytes, dedup.EventSerde(*id), `CREATE TABLE IF NOT EXISTS %s (
					event_id      text    PRIMARY KEY,
					event         jsonb   NOT NULL,
					topic         text    NOT NULL,
					partition     integer NOT NULL,
					record_offset bigint  NOT NULL)`,
					`INSERT INTO %s (event_id, event, topic, partition, record_offset)
					VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`,
					func(r pgsink.Record[[]byte, dedup.Event]) []any {
						return []any{r.Value.ID, string(r.Value.Raw), r.Topic, r.Partition, r.Offset}
					})
			}
		}},
	"enrich": {topic: "orders-enriched", table: "orders_enriched",
		flags: func(*flag.FlagSet) func(pgsink.Config, string) (sinkRunner, error) {
			return func(cfg pgsink.Config, table string) (sinkRunner, error) {
				return rowSink(cfg, table, serde.String, enrichedSerde, `CREATE TABLE IF NOT EXISTS %s (
					order_id     text   PRIMARY KEY,
					customer_id  text   NOT NULL,
					amount_cents bigint NOT NULL,
					customer     jsonb,
					enriched     jsonb  NOT NULL)`,
					`INSERT INTO %s (order_id, customer_id, amount_cents, customer, enriched)
					VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING`,
					func(r pgsink.Record[string, enriched]) []any {
						v := r.Value
						var customer any
						if string(v.Customer) != "null" && len(v.Customer) > 0 {
							customer = string(v.Customer)
						}
						return []any{v.OrderID, v.CustomerID, v.AmountCents, customer, string(v.raw)}
					})
			}
		}},
	"passthrough": {topic: "out", table: "records",
		flags: func(*flag.FlagSet) func(pgsink.Config, string) (sinkRunner, error) {
			return func(cfg pgsink.Config, table string) (sinkRunner, error) {
				return rowSink(cfg, table, serde.Bytes, serde.Bytes, `CREATE TABLE IF NOT EXISTS %s (
					topic            text        NOT NULL,
					partition        integer     NOT NULL,
					record_offset    bigint      NOT NULL,
					record_key       bytea,
					record_value     bytea,
					record_timestamp timestamptz NOT NULL,
					PRIMARY KEY (topic, partition, record_offset))`,
					`INSERT INTO %s (topic, partition, record_offset, record_key, record_value, record_timestamp)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
					func(r pgsink.Record[[]byte, []byte]) []any {
						return []any{r.Topic, r.Partition, r.Offset, r.Key, r.Value, r.Timestamp}
					})
			}
		}},
}

// rowSink returns a sink that writes each record of a batch as one row of
// table (name or schema.name): its Setup runs create, and its write
// function queues insert with row's arguments for every record and sends
// them in one round trip. create and insert name the table with %s.
func rowSink[K, V any](cfg pgsink.Config, table string, key serde.Serde[K], value serde.Serde[V],
	create, insert string, row func(pgsink.Record[K, V]) []any) (sinkRunner, error) {
	t := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	cfg.Setup = ddl(create, t)
	insert = fmt.Sprintf(insert, t)
	return pgsink.New(cfg, key, value, func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[K, V]) error {
		pb := &pgx.Batch{}
		for _, r := range b.Records {
			pb.Queue(insert, row(r)...)
		}
		return tx.SendBatch(ctx, pb).Close()
	})
}

// enriched is an output value of the enrich app.
type enriched struct {
	OrderID     string          `json:"order_id"`
	CustomerID  string          `json:"customer_id"`
	AmountCents int64           `json:"amount_cents"`
	Customer    json.RawMessage `json:"customer"`
	raw         []byte
}

var enrichedSerde = serde.Func("enriched-order", func(e enriched) ([]byte, error) { return e.raw, nil },
	func(b []byte) (enriched, error) {
		var e enriched
		if err := json.Unmarshal(b, &e); err != nil {
			return enriched{}, err
		}
		if e.OrderID == "" || e.CustomerID == "" {
			return enriched{}, errors.New("missing order_id or customer_id")
		}
		e.raw = b
		return e, nil
	})

// ddl returns a Config.Setup that runs the statement format, with the
// table's quoted name.
func ddl(format, table string) func(context.Context, pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, fmt.Sprintf(format, table))
		return err
	}
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErrorf("runner: sink: missing the kind of sink: postgres")
	}
	if args[0] != "postgres" {
		return usageErrorf("runner: sink: unknown kind of sink %q: postgres is the one there is", args[0])
	}
	args = args[1:]
	names := "dedup, enrich, passthrough, revenue"
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErrorf("runner: sink postgres: missing APP (one of: %s)", names)
	}
	app, ok := sinkApps[args[0]]
	if !ok {
		return usageErrorf("runner: sink postgres: unknown app %q (one of: %s)", args[0], names)
	}
	name := args[0]
	fs := flag.NewFlagSet("sink postgres "+name, flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	conn := fs.String("postgres", "", "Postgres connection string (URL or key=value pairs; required)")
	group := fs.String("group", name+"-sink", "consumer group, and the offsets table's group_id")
	instance := fs.String("instance", "", "stable id of this sink instance: static group membership (default: hostname)")
	topic := fs.String("topic", app.topic, "topic to read (the app's output)")
	table := fs.String("table", app.table, "table to write (name or schema.name)")
	onError := fs.String("on-error", "dlq", "a record that does not decode: dlq (table sluice_sink_dead_letters), skip or fail")
	maxBatch := fs.Int("max-batch", 5000, "most records in one database transaction")
	session := fs.Duration("session-timeout", 10*time.Second, "group session timeout")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	build := app.flags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fmt.Fprintf(&b, "\nFlags of runner sink postgres %s:\n", name)
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return &helpError{more: b.String()}
		}
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("runner: sink postgres: unexpected arguments %q", fs.Args())
	}
	if *conn == "" {
		return usageErrorf("runner: sink postgres: --postgres is required (e.g. postgres://user@host/db, or SLUICE_POSTGRES)")
	}
	policy, err := pgsink.ParseErrorPolicy(*onError)
	if err != nil {
		return usageErrorf("runner: sink postgres: --on-error: %v", err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageErrorf("runner: sink postgres: --log-level: %v", err)
	}
	if *instance == "" {
		if *instance, err = os.Hostname(); err != nil || *instance == "" {
			return errors.New("runner: sink postgres: no --instance and no hostname: pass --instance")
		}
	}
	if _, err := pgxpool.ParseConfig(*conn); err != nil {
		return usageErrorf("runner: sink postgres: --postgres: %v", err)
	}
	cfg := pgsink.Config{
		Brokers: strings.Split(*brokers, ","), Group: *group, Topics: []string{*topic}, Instance: *instance,
		Postgres: *conn, OnError: policy, MaxBatchRecords: *maxBatch, SessionTimeout: *session,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})),
	}
	s, err := build(cfg, *table)
	if err != nil {
		return fmt.Errorf("runner: sink postgres %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "sink %s: %s -> table %s (group %s)\n", name, *topic, *table, *group)
	if err := s.Run(ctx); err != nil {
		return fmt.Errorf("runner: sink postgres %s: %w", name, err)
	}
	return nil
}
