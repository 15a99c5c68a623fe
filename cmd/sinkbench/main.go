// Command sinkbench measures the Postgres sink (txn/pgsink) against the
// loop it must keep up with: a plain consumer that inserts each polled
// batch with the same statement and keeps no offsets (no exactly-once:
// a crash duplicates or loses a batch). Both run in one process, against
// one embedded broker and one throwaway Postgres (txn/pgserver, fsync off),
// on the same topic, -runs times each, interleaved, and it prints the
// records/s of each run, the medians and the ratio sink/plain (target
// ≥ 0.8, issue 15).
//
//	go run ./cmd/sinkbench [-records 200000] [-partitions 8] [-batch 5000] [-runs 3]
//
// Each variant's clock starts when its first batch reaches the write
// function (after the group join, which both pay) and stops when the
// last record is committed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/cmd/internal/benchenv"
	"github.com/sluicehq/sluice/cmd/internal/ratiobench"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/pgsink"
)

// Order is the benchmark's record value.
type Order struct {
	ID      int64  `json:"id"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

var orderSerde = serde.JSON[Order]()

// env is what each run of either variant works on: the broker and the
// database, how many records to write and the batch size.
type env struct {
	*benchenv.Env
	n, batch int
}

// truncate empties the orders table before a run.
func (e env) truncate(ctx context.Context, _ ratiobench.Variant, _ string) error {
	_, err := e.Pool.Exec(ctx, "TRUNCATE orders")
	return err
}

// check checks that the run of v wrote every order.
func (e env) check(ctx context.Context, v ratiobench.Variant) error {
	var rows int
	if err := e.Pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&rows); err != nil {
		return err
	}
	if rows != e.n {
		return fmt.Errorf("%s wrote %d rows, want %d", v.Name, rows, e.n)
	}
	return nil
}

func main() {
	records := flag.Int("records", 200_000, "records in the topic, each variant reads them all")
	partitions := flag.Int("partitions", 8, "partitions of the topic")
	batch := flag.Int("batch", 5000, "most records per poll, and so per insert / transaction")
	runs := flag.Int("runs", 3, "runs of each variant, interleaved")
	flag.Parse()
	if err := run(*records, int32(*partitions), *batch, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "sinkbench:", err)
		os.Exit(1)
	}
}

func run(n int, partitions int32, batch, runs int) error {
	ctx := context.Background()
	be, err := benchenv.Start(ctx)
	if err != nil {
		return err
	}
	defer be.Close()
	if _, err := be.Pool.Exec(ctx, `CREATE TABLE orders (id bigint PRIMARY KEY, account text NOT NULL, amount bigint NOT NULL)`); err != nil {
		return err
	}
	if err := produce(ctx, be.Brokers, n, partitions); err != nil {
		return err
	}
	fmt.Printf("sinkbench: %d records (%d partitions), batches of at most %d, %d runs each\n", n, partitions, batch, runs)

	e := env{Env: be, n: n, batch: batch}
	_, err = ratiobench.Bench{
		Units: n, Unit: "records", Runs: runs, Target: 0.8,
		Baseline: ratiobench.Variant{Name: "plain", Label: "plain_insert", Run: e.runPlain},
		Variant:  ratiobench.Variant{Name: "sink", Label: "pgsink", Run: e.runSink},
		Prepare:  e.truncate,
		Check:    e.check,
	}.Run(ctx, os.Stdout)
	return err
}

// produce writes orders 0..n-1, order i to partition i mod partitions.
func produce(ctx context.Context, brokers []string, n int, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, "orders")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	for i := range n {
		v, _ := json.Marshal(Order{ID: int64(i), Account: "acct-" + strconv.Itoa(i%1000), Amount: int64(i%97 + 1)})
		cl.Produce(ctx, &kgo.Record{Topic: "orders", Partition: int32(i) % partitions, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

const insert = `INSERT INTO orders (id, account, amount)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) ON CONFLICT (id) DO NOTHING`

// insertOrders is the write both variants share: one multi-row insert.
func insertOrders(ctx context.Context, exec func(context.Context, string, ...any) (pgconn.CommandTag, error), orders []Order) error {
	ids := make([]int64, len(orders))
	accounts := make([]string, len(orders))
	amounts := make([]int64, len(orders))
	for i, o := range orders {
		ids[i], accounts[i], amounts[i] = o.ID, o.Account, o.Amount
	}
	_, err := exec(ctx, insert, ids, accounts, amounts)
	return err
}

// runPlain is the baseline: poll, decode, insert (one implicit
// transaction per batch), no offsets anywhere.
func (e env) runPlain(ctx context.Context, group string) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("orders"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var start time.Time
	done := 0
	for done < e.n {
		fs := cl.PollRecords(ctx, e.batch)
		if err := fs.Err0(); err != nil {
			return 0, err
		}
		orders := make([]Order, 0, fs.NumRecords())
		for _, r := range fs.Records() {
			o, err := orderSerde.Decode(r.Value)
			if err != nil {
				return 0, err
			}
			orders = append(orders, o)
		}
		if len(orders) == 0 {
			continue
		}
		if start.IsZero() {
			start = time.Now()
		}
		if err := insertOrders(ctx, e.Pool.Exec, orders); err != nil {
			return 0, err
		}
		done += len(orders)
	}
	return time.Since(start), nil
}

// runSink runs the Postgres sink with the same insert, until every
// record is committed.
func (e env) runSink(ctx context.Context, group string) (time.Duration, error) {
	var start time.Time
	s, err := pgsink.New(pgsink.Config{
		Brokers: e.Brokers, Group: group, Topics: []string{"orders"}, Postgres: e.Conn, MaxBatchRecords: e.batch,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, serde.Bytes, orderSerde, func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[[]byte, Order]) error {
		if start.IsZero() {
			start = time.Now()
		}
		orders := make([]Order, len(b.Records))
		for i, r := range b.Records {
			orders[i] = r.Value
		}
		return insertOrders(ctx, tx.Exec, orders)
	})
	if err != nil {
		return 0, err
	}
	// The write function cannot see its own commit: watch the counter.
	end, err := ratiobench.RunUntil(ctx, "sink", time.Millisecond, s.Run, func() bool {
		return s.Stats().Records >= int64(e.n)
	})
	if err != nil {
		return 0, err
	}
	return end.Sub(start), nil
}
