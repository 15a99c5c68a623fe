// Command relaybench measures the outbox relay (txn/outbox) against the
// loop it must keep up with: a raw select-and-produce loop that reads
// the outbox table in (xid, seq) order after an in-memory position and
// produces each batch with a plain (idempotent, non-transactional)
// producer, with no horizon, no transaction, no cursor and no cleanup (a
// crash loses its place; a late commit of an older transaction is
// skipped). Both run in one process, against one embedded broker and one
// throwaway Postgres (txn/pgserver, fsync off), on an outbox table filled
// with the same rows before each run, -runs times each, interleaved; it
// prints the rows/s of each run, the medians and the ratio relay/raw
// (target ≥ 0.5, issue 15).
//
//	go run ./cmd/relaybench [-rows 200000] [-partitions 8] [-batch 5000] [-value 100] [-runs 3]
//
// Each variant's clock starts at its first read of the table (after its
// client and, for the relay, its session start: InitProducerID, the
// cursor read back, the claim) and stops when the last row is produced
// (raw: flushed; relay: its transaction committed and confirmed). The
// relay's deletes of relayed rows run meanwhile, as they do in use.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/cmd/internal/benchenv"
	"github.com/sluicehq/sluice/cmd/internal/ratiobench"
	"github.com/sluicehq/sluice/txn/outbox"
)

func main() {
	rows := flag.Int("rows", 200_000, "rows in the outbox table, each variant relays them all")
	partitions := flag.Int("partitions", 8, "partitions of each run's output topic")
	batch := flag.Int("batch", 5000, "most rows per read, and so per produced batch / transaction")
	value := flag.Int("value", 100, "bytes per row value")
	runs := flag.Int("runs", 3, "runs of each variant, interleaved")
	flag.Parse()
	if err := run(*rows, int32(*partitions), *batch, *value, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// txnsPerFill is how many transactions write the rows before a run.
const txnsPerFill = 200

// env is what each run of either variant works on: the broker and the
// database, how many rows to relay and the batch size.
type env struct {
	*benchenv.Env
	n, batch int
	// adm makes each run's output topic, of partitions partitions.
	adm        *kadm.Client
	partitions int32
	// value is the bytes per row value.
	value int
}

// prepare makes a run's output topic and fills the table anew with rows
// for it.
func (e env) prepare(ctx context.Context, _ ratiobench.Variant, topic string) error {
	resp, err := e.adm.CreateTopic(ctx, e.partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return err
	}
	return fill(ctx, e.Pool, topic, e.n, e.value)
}

func run(n int, partitions int32, batch, value, runs int) error {
	ctx := context.Background()
	be, err := benchenv.Start(ctx)
	if err != nil {
		return err
	}
	defer be.Close()
	if err := (outbox.Table{}).Create(ctx, be.Pool); err != nil {
		return err
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(be.Brokers...))
	if err != nil {
		return err
	}
	defer adm.Close()
	e := env{Env: be, n: n, batch: batch, adm: kadm.NewClient(adm), partitions: partitions, value: value}

	fmt.Printf("relaybench: %d rows of %d-byte values (written by %d transactions), output topics of %d partitions, batches of at most %d, %d runs each\n",
		n, value, txnsPerFill, partitions, batch, runs)
	_, err = ratiobench.Bench{
		Units: n, Unit: "rows", Runs: runs, Target: 0.5,
		Baseline: ratiobench.Variant{Name: "raw", Label: "raw_select_produce", Run: e.runRaw},
		Variant:  ratiobench.Variant{Name: "relay", Label: "outbox_relay", Run: e.runRelay},
		Prepare:  e.prepare,
	}.Run(ctx, os.Stdout)
	return err
}

// fill empties the outbox table and writes n rows for topic in
// txnsPerFill transactions, then analyzes the table.
func fill(ctx context.Context, pool *pgxpool.Pool, topic string, n, value int) error {
	if _, err := pool.Exec(ctx, "TRUNCATE sluice_outbox"); err != nil {
		return err
	}
	per := max(1, n/txnsPerFill)
	for from := 0; from < n; from += per {
		to := min(n, from+per)
		_, err := pool.Exec(ctx, `INSERT INTO sluice_outbox (topic, key, value)
			SELECT $1, convert_to('order-' || (g % 10000), 'UTF8'), convert_to(rpad('{"order":' || g || '}', $4, ' '), 'UTF8')
			FROM generate_series($2::int, $3::int - 1) AS g`, topic, from, to, value)
		if err != nil {
			return err
		}
	}
	_, err := pool.Exec(ctx, "ANALYZE sluice_outbox")
	return err
}

// runRaw is the baseline: select after an in-memory position, produce,
// flush; no horizon, transaction, cursor or cleanup.
func (e env) runRaw(ctx context.Context, _ string) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var (
		start time.Time
		xid   uint64
		seq   int64
		done  int
		perr  error
	)
	for done < e.n {
		if start.IsZero() {
			start = time.Now()
		}
		rs, err := e.Pool.Query(ctx, `SELECT xid, seq, topic, key, value, header_keys, header_values, created_at FROM sluice_outbox
			WHERE (xid, seq) > ($1::xid8, $2::bigint) ORDER BY xid, seq LIMIT $3`, xid, seq, e.batch)
		if err != nil {
			return 0, err
		}
		got := 0
		for rs.Next() {
			var (
				topic      *string
				key, value []byte
				hk         []string
				hv         [][]byte
				created    time.Time
			)
			if err := rs.Scan(&xid, &seq, &topic, &key, &value, &hk, &hv, &created); err != nil {
				rs.Close()
				return 0, err
			}
			cl.Produce(ctx, &kgo.Record{Topic: *topic, Key: key, Value: value, Timestamp: created}, func(_ *kgo.Record, err error) {
				if err != nil && perr == nil {
					perr = err
				}
			})
			got++
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return 0, err
		}
		if err := cl.Flush(ctx); err != nil {
			return 0, err
		}
		if perr != nil {
			return 0, perr
		}
		done += got
	}
	return time.Since(start), nil
}

// runRelay runs the relay until it has relayed every row.
func (e env) runRelay(ctx context.Context, name string) (time.Duration, error) {
	r, err := outbox.New(outbox.Config{
		Brokers: e.Brokers, Name: name, Postgres: e.Conn, MaxBatchRows: e.batch, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 0, err
	}
	// The relay's loop is its own: watch its counters.
	var (
		start time.Time
		rows  int64
	)
	end, err := ratiobench.RunUntil(ctx, "relay", 200*time.Microsecond, r.Run, func() bool {
		s := r.Stats()
		if start.IsZero() && s.Polls > 0 {
			start = time.Now()
		}
		rows = s.Rows
		return rows >= int64(e.n)
	})
	if err != nil {
		return 0, err
	}
	if rows != int64(e.n) {
		return 0, fmt.Errorf("relayed %d rows, want %d", rows, e.n)
	}
	return end.Sub(start), nil
}
