package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/state"
)

// Guarantee is a processing guarantee. All three run the same operators.
type Guarantee int

const (
	// ExactlyOnce (the default): each poll batch is one Kafka transaction
	// covering the outputs and the consumed offsets; input is read with
	// read_committed. Every input record's effects are visible exactly
	// once to read_committed readers.
	ExactlyOnce Guarantee = iota
	// AtLeastOnce: no transactions; offsets are committed after the
	// batch's outputs are acknowledged. A crash can duplicate outputs,
	// never lose them.
	AtLeastOnce
	// AtMostOnce: offsets are committed before the batch is processed. A
	// crash can lose outputs, never duplicate them.
	AtMostOnce
)

func (g Guarantee) String() string {
	switch g {
	case ExactlyOnce:
		return "exactly_once"
	case AtLeastOnce:
		return "at_least_once"
	case AtMostOnce:
		return "at_most_once"
	}
	return fmt.Sprintf("Guarantee(%d)", int(g))
}

// ParseGuarantee parses "exactly_once", "at_least_once" or "at_most_once".
func ParseGuarantee(s string) (Guarantee, error) {
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, AtMostOnce} {
		if g.String() == s {
			return g, nil
		}
	}
	return 0, fmt.Errorf("txn: unknown guarantee %q: use exactly_once, at_least_once or at_most_once", s)
}

// Config configures a Worker. The zero value of every field means its
// default; Brokers is the only field without one.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Instance identifies this worker, stably across its restarts: the
	// transactional id is `<app-id>-<instance>` and the static group
	// membership id is Instance, so a restarted worker fences its own
	// zombie at once and takes its partitions back without a rebalance.
	// Two live workers must never share one. Default: the hostname.
	Instance string
	// StateDir holds the local state of this worker's tasks, one Pebble
	// database per task. Default: a directory under os.TempDir named after
	// the app and instance (runner: ./state/<app-id>/<instance>).
	StateDir string
	// StateFlushWrites is how many committed state writes a task's
	// database holds in memory at most (held for a coalesced apply, or
	// applied and not yet flushed) before flushing them to disk. The
	// databases keep no write-ahead log (the changelog is the log, as in
	// Kafka Streams), so a crash loses the unflushed writes and the
	// restart replays them from the changelog: this bounds that replay
	// to about StateFlushWrites records per task, whatever the size of
	// the store. Smaller means shorter replays and more flushing and
	// compacting. Default 100,000 (0); negative is invalid.
	StateFlushWrites int
	// Guarantee defaults to ExactlyOnce.
	Guarantee Guarantee
	// CommitInterval bounds how long one transaction (or offset commit)
	// collects records. Default 100ms.
	CommitInterval time.Duration
	// MaxBatchRecords bounds how many input records one transaction
	// covers. Default 20,000 (0); negative is invalid.
	MaxBatchRecords int
	// Lanes is how many goroutines run a batch's records through their
	// tasks, each handing its outputs to the producer from a goroutine of
	// its own. A task always runs on the same lane (its partition number
	// modulo Lanes), so its records are processed, and its outputs
	// produced, in order. Default: GOMAXPROCS, at most 8 (0); negative
	// is invalid.
	Lanes int
	// SessionTimeout is the group session timeout: how long a dead,
	// not-restarted worker's partitions wait before they move. Default 10s.
	SessionTimeout time.Duration
	// TransactionTimeout is how long the broker lets a transaction stay
	// open before aborting it itself. It bounds how long a dead worker's
	// open transaction blocks read_committed readers and the partitions'
	// next owner. It must not be shorter than CommitInterval, nor longer
	// than the brokers allow (Kafka's transaction.max.timeout.ms, 15
	// minutes by default): the producer's first InitProducerID fails
	// with INVALID_TRANSACTION_TIMEOUT otherwise. Default: SessionTimeout.
	TransactionTimeout time.Duration
	// ReplicationFactor is the replication factor of the internal topics
	// the worker creates: changelogs, repartition topics and the DLQ.
	// Internal topics that exist keep theirs. Default (0, or -1 as in
	// Kafka's CreateTopics): the brokers' default, Kafka's
	// default.replication.factor or Redpanda's default_topic_replications,
	// both 1 unless set; a production cluster wants 3. Valid: -1 to 32767.
	ReplicationFactor int
	// AdvertiseAddr is the host:port at which other workers and clients
	// reach this worker's HTTP server (its interactive queries). The
	// worker publishes it to its group in its join metadata, and answers
	// a query for a key another worker owns with that worker's
	// address. Default: none; the worker's queries still answer for its
	// own keys, and others' queries for them say that it advertises no
	// address.
	AdvertiseAddr string
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the worker's Prometheus metrics.
	Registerer prometheus.Registerer
	// Clock is the wall clock processors see. Default: time.Now.
	Clock func() time.Time
	// ClientOpts are extra franz-go options, applied last (tests use them
	// to dial an embedded broker or shorten timeouts).
	ClientOpts []kgo.Opt
}

// WithDefaults returns a copy of c with the default of every field left
// zero filled in, as NewWorker uses it; StateDir stays as it is (its
// default depends on the app id), and ReplicationFactor too (0 leaves the
// choice to the brokers). It does not validate c.
func (c Config) WithDefaults() Config {
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 100 * time.Millisecond
	}
	if c.MaxBatchRecords <= 0 {
		c.MaxBatchRecords = 20_000
	}
	if c.StateFlushWrites <= 0 {
		c.StateFlushWrites = state.DefaultFlushWrites
	}
	if c.Lanes <= 0 {
		c.Lanes = min(runtime.GOMAXPROCS(0), 8)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = c.SessionTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Validate reports what is wrong with c, without connecting anywhere.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("txn: no brokers: set Config.Brokers (runner: --brokers)"))
	}
	if c.Guarantee < ExactlyOnce || c.Guarantee > AtMostOnce {
		errs = append(errs, fmt.Errorf("txn: unknown guarantee %v", c.Guarantee))
	}
	d := c.WithDefaults()
	if d.Instance == "" {
		errs = append(errs, errors.New("txn: no instance id and no hostname: set Config.Instance (runner: --instance)"))
	}
	for _, f := range []struct {
		field, flag string
		v           int
	}{
		{"StateFlushWrites", "--state-flush-writes", c.StateFlushWrites},
		{"MaxBatchRecords", "--max-batch-records", c.MaxBatchRecords},
		{"Lanes", "--lanes", c.Lanes},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("txn: %s is %d: it must be positive, or 0 for the default (runner: %s)", f.field, f.v, f.flag))
		}
	}
	for _, f := range []struct {
		field, flag string
		v           time.Duration
	}{
		{"CommitInterval", "--commit-interval", c.CommitInterval},
		{"SessionTimeout", "--session-timeout", c.SessionTimeout},
		{"TransactionTimeout", "--transaction-timeout", c.TransactionTimeout},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("txn: %s is %v: it must be positive, or 0 for the default (runner: %s)", f.field, f.v, f.flag))
		}
	}
	if c.ReplicationFactor < -1 || c.ReplicationFactor > math.MaxInt16 {
		errs = append(errs, fmt.Errorf("txn: ReplicationFactor is %d: it must be from 1 to %d, or 0 or -1 for the brokers' default (runner: --replication-factor)", c.ReplicationFactor, math.MaxInt16))
	}
	if c.AdvertiseAddr != "" {
		if err := checkAdvertiseAddr(c.AdvertiseAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if d.TransactionTimeout < d.CommitInterval {
		errs = append(errs, fmt.Errorf("txn: transaction timeout %v is shorter than the commit interval %v: a transaction would be aborted before it commits (runner: --transaction-timeout, --commit-interval)", d.TransactionTimeout, d.CommitInterval))
	}
	return errors.Join(errs...)
}

// checkAdvertiseAddr checks that addr is a host:port others can dial: a
// host (a name or an address that is not unspecified) and a port.
func checkAdvertiseAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
		return fmt.Errorf("txn: advertised address %q: want host:port (runner: --advertise-addr): %w", addr, err)
	case host == "" || port == "" || port == "0":
		return fmt.Errorf("txn: advertised address %q: want a host and a port others can reach, such as worker-1.example:9100 (runner: --advertise-addr)", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("txn: advertised address %q: %s is no address others can reach; give this worker's host name or IP (runner: --advertise-addr)", addr, host)
	}
	return nil
}
