package outbox

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/internal/pgsql"
)

// Defaults of Config and Table.
const (
	// DefaultTable is the outbox table's name when Config.Table and
	// Table.Name are empty.
	DefaultTable = "sluice_outbox"
	// DefaultCursorTopic is the compacted topic that holds each relay's
	// cursor when Config.CursorTopic is empty.
	DefaultCursorTopic = "sluice-outbox-cursors"
	// TransactionalIDPrefix prefixes a relay's name to make its
	// transactional id: "sluice-outbox-" + Config.Name.
	TransactionalIDPrefix = "sluice-outbox-"
)

// Config configures a Relay. The zero value of every field means its
// default; Brokers, Name and one of Postgres or Pool are required.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Name names the relay. It is the key of the relay's cursor in the
	// cursor topic, and its transactional id is TransactionalIDPrefix +
	// Name: it must be stable across restarts of the relay (a restarted
	// relay fences the one it replaces by it) and unique among the relays
	// of one cluster. Only one relay of a name runs at a time: a second
	// one takes over and the first stops (Run returns a *FencedError).
	// Required.
	Name string

	// Postgres is the connection string (a URL or key=value pairs, as
	// pgx reads them) of the database that holds the outbox table. The
	// relay opens its own pool with it. Ignored when Pool is set.
	Postgres string
	// Pool, when set, is the pool the relay uses instead of opening one;
	// the relay does not close it. It needs two connections: one reads
	// rows, one deletes those relayed.
	Pool *pgxpool.Pool
	// Table is the outbox table, a name or schema.name. Run creates it
	// when missing (see Table.DDL). Default DefaultTable.
	Table string
	// KeyOrder says that the table's writers check key order (see
	// Table.KeyOrder): the relay then creates the table's key table with
	// it and removes the entries of keys it has relayed. Default false.
	KeyOrder bool
	// Topic is where a row whose topic column is NULL goes. Default none:
	// such a row stops the relay with a *RowError.
	Topic string
	// CursorTopic is the compacted topic that holds the relay's cursor
	// (key: Name), written in the transaction of every batch. Run
	// creates it when missing (one partition, cleanup.policy=compact).
	// Relays that share it wait at start for one another's open
	// transactions in it: give relays that must not wait on each other
	// topics of their own. Default DefaultCursorTopic.
	CursorTopic string

	// MaxBatchRows bounds how many rows one Kafka transaction covers.
	// Default 5,000.
	MaxBatchRows int
	// PollInterval is how long the relay waits before it reads again
	// after a read that found nothing to relay. Default 100ms.
	PollInterval time.Duration
	// CleanupRows bounds how many rows one DELETE of relayed rows
	// removes; a cleanup that is further behind deletes in several
	// statements, each its own transaction. Default 10,000.
	CleanupRows int
	// TransactionTimeout is the Kafka transaction timeout: how long the
	// broker lets a transaction of this relay stay open before it aborts
	// it. A restarted relay aborts its predecessor's open transaction at
	// once; this bounds how long a dead relay that is not restarted holds
	// back read_committed readers of the topics it wrote. A batch that
	// takes longer than this is aborted, and the relay starts over from
	// its cursor. Default 10s.
	TransactionTimeout time.Duration
	// Logger receives the relay's logs. Default: slog.Default().
	Logger *slog.Logger
	// ClientOpts are extra franz-go options for the relay's producer,
	// applied last.
	ClientOpts []kgo.Opt
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.CursorTopic == "" {
		c.CursorTopic = DefaultCursorTopic
	}
	if c.MaxBatchRows <= 0 {
		c.MaxBatchRows = 5000
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.CleanupRows <= 0 {
		c.CleanupRows = 10_000
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 10 * time.Second
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
		errs = append(errs, errors.New("outbox: no brokers: set Config.Brokers (runner: --brokers)"))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("outbox: no relay name: set Config.Name (runner: --name)"))
	}
	if c.Postgres == "" && c.Pool == nil {
		errs = append(errs, errors.New("outbox: no database: set Config.Postgres or Config.Pool (runner: --postgres)"))
	}
	if c.Pool == nil && c.Postgres != "" {
		if _, err := pgxpool.ParseConfig(c.Postgres); err != nil {
			errs = append(errs, fmt.Errorf("outbox: Config.Postgres: %w", err))
		}
	}
	d := c.withDefaults()
	if _, err := tableIdent(d.Table, ""); err != nil {
		errs = append(errs, err)
	}
	if d.Topic == d.CursorTopic {
		errs = append(errs, fmt.Errorf("outbox: Config.Topic and Config.CursorTopic are both %q: rows and cursors need topics of their own", d.Topic))
	}
	return errors.Join(errs...)
}

// tableIdent returns the quoted identifier of a table name or
// schema.name, with suffix added to the name.
func tableIdent(name, suffix string) (string, error) {
	id, err := pgsql.TableIdent(name, suffix)
	if err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	return id, nil
}
