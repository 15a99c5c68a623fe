package pgsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/internal/pgsql"
)

// ErrorPolicy decides what happens to a record whose key or value does not
// decode. The write function is never given such a record.
type ErrorPolicy int

const (
	// OnErrorDLQ writes the record (raw key and value, topic, partition,
	// offset and the error) into the dead-letter table, in the same
	// database transaction as the batch and its offsets, and goes on: a
	// dead letter is recorded exactly once, like everything else. This
	// is the default.
	OnErrorDLQ ErrorPolicy = iota
	// OnErrorSkip drops the record, counts it (Stats.Skipped) and goes on.
	OnErrorSkip
	// OnErrorFail stops the sink: Run returns a *RecordError naming the
	// topic, partition and offset. Nothing of the batch is written.
	OnErrorFail
)

func (p ErrorPolicy) String() string {
	switch p {
	case OnErrorDLQ:
		return "dlq"
	case OnErrorSkip:
		return "skip"
	case OnErrorFail:
		return "fail"
	}
	return "ErrorPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseErrorPolicy parses "dlq", "skip" or "fail".
func ParseErrorPolicy(s string) (ErrorPolicy, error) {
	for _, p := range []ErrorPolicy{OnErrorDLQ, OnErrorSkip, OnErrorFail} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("pgsink: unknown error policy %q: use dlq, skip or fail", s)
}

// Config configures a Sink. The zero value of every field means its
// default; Brokers, Group, Topics and one of Postgres or Pool are
// required.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Group is the consumer group the sink's instances form, and the
	// first column of the offsets table's key. Required.
	Group string
	// Topics are the topics read, with read_committed. Required.
	Topics []string
	// Instance, when set, is this instance's static group membership id
	// (group.instance.id): a restarted instance takes its partitions back
	// without a rebalance. It must be stable across restarts of one
	// instance and unique among live ones. Default: none (a dynamic
	// member; a restart waits for a rebalance).
	Instance string

	// Postgres is the connection string (a URL or key=value pairs, as
	// pgx reads them) of the database written to. The sink opens its own
	// pool with it, with idle_in_transaction_session_timeout set (see
	// IdleInTransactionTimeout). Ignored when Pool is set.
	Postgres string
	// Pool, when set, is the pool the sink uses instead of opening one;
	// the sink does not close it. Set idle_in_transaction_session_timeout
	// on its connections yourself (see IdleInTransactionTimeout).
	Pool *pgxpool.Pool
	// OffsetsTable holds one row per (group, topic, partition): the next
	// offset to read and the partition's fencing epoch. Created when
	// missing. A name, or schema.name. Default "sluice_sink_offsets".
	OffsetsTable string
	// DeadLetterTable holds the records OnErrorDLQ sends there, keyed by
	// (group, topic, partition, offset). Created when missing. Default
	// "sluice_sink_dead_letters".
	DeadLetterTable string
	// Setup, when set, runs when the sink starts, in the transaction that
	// creates the offsets and dead-letter tables and under its advisory
	// lock: create the write function's own tables there (CREATE TABLE
	// IF NOT EXISTS), safely when several instances start at once.
	Setup func(ctx context.Context, tx pgx.Tx) error
	// OnError is what happens to a record that does not decode. Default
	// OnErrorDLQ.
	OnError ErrorPolicy

	// MaxBatchRecords bounds how many records one database transaction
	// covers. Default 5,000.
	MaxBatchRecords int
	// SessionTimeout is the group session timeout: how long a dead or
	// stopped instance keeps its partitions. Default 10s.
	SessionTimeout time.Duration
	// IdleInTransactionTimeout is how long Postgres lets one of the sink's
	// sessions sit idle inside a transaction before ending it (and rolling
	// the transaction back). A stopped instance (SIGSTOP, a long GC pause,
	// a frozen VM) holds the row locks of its open transaction on the
	// offsets table, which the partitions' next owner waits for: this
	// bounds that wait. A write function that keeps a transaction open
	// without talking to the database for longer than this fails its
	// batch. Default: SessionTimeout. Applies to the pool the sink opens
	// from Postgres.
	IdleInTransactionTimeout time.Duration
	// Logger receives the sink's logs. Default: slog.Default().
	Logger *slog.Logger
	// ClientOpts are extra franz-go options, applied last.
	ClientOpts []kgo.Opt
}

const (
	defaultOffsetsTable    = "sluice_sink_offsets"
	defaultDeadLetterTable = "sluice_sink_dead_letters"
)

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.OffsetsTable == "" {
		c.OffsetsTable = defaultOffsetsTable
	}
	if c.DeadLetterTable == "" {
		c.DeadLetterTable = defaultDeadLetterTable
	}
	if c.MaxBatchRecords <= 0 {
		c.MaxBatchRecords = 5000
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.IdleInTransactionTimeout <= 0 {
		c.IdleInTransactionTimeout = c.SessionTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports what is wrong with c, without connecting anywhere.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("pgsink: no brokers: set Config.Brokers (runner: --brokers)"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("pgsink: no group: set Config.Group (runner: --group)"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("pgsink: no topics: set Config.Topics (runner: --topic)"))
	}
	if c.Postgres == "" && c.Pool == nil {
		errs = append(errs, errors.New("pgsink: no database: set Config.Postgres or Config.Pool (runner: --postgres)"))
	}
	if c.Pool == nil && c.Postgres != "" {
		if _, err := pgxpool.ParseConfig(c.Postgres); err != nil {
			errs = append(errs, fmt.Errorf("pgsink: Config.Postgres: %w", err))
		}
	}
	if c.OnError < OnErrorDLQ || c.OnError > OnErrorFail {
		errs = append(errs, fmt.Errorf("pgsink: unknown error policy %v", c.OnError))
	}
	d := c.withDefaults()
	for _, t := range []string{d.OffsetsTable, d.DeadLetterTable} {
		if _, err := tableIdent(t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tableIdent returns the quoted identifier of a table name or
// schema.name.
func tableIdent(name string) (string, error) {
	id, err := pgsql.TableIdent(name, "")
	if err != nil {
		return "", fmt.Errorf("pgsink: %w", err)
	}
	return id, nil
}
