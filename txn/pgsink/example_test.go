package pgsink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/pgsink"
	"github.com/sluicehq/sluice/txn/pgtest"
)

// Payment is the value of the payments topic's records.
type Payment struct {
	ID    string `json:"id"`
	Cents int64  `json:"cents"`
}

// A sink that lands payments in a table, once each: the write is an
// idempotent insert, and the offsets commit with it.
func Example() {
	ctx := context.Background()
	// An embedded broker and a scratch database stand in for yours.
	cluster, addr, _ := broker.Start(broker.Config{})
	defer cluster.Close()
	_, conn, _ := pgtest.Current().NewDB(ctx)
	pool, _ := pgxpool.New(ctx, conn)
	defer pool.Close()
	pool.Exec(ctx, `CREATE TABLE payments (id text PRIMARY KEY, user_id text NOT NULL, cents bigint NOT NULL)`)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("payments"))
	kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "payments")
	for _, p := range []string{`{"id":"p1","cents":500}`, `{"id":"p2","cents":300}`, `{"id":"p1","cents":500}`, `{"id":"p3","cents":200}`} {
		user := map[bool]string{true: "alice", false: "bob"}[p[8] != '2']
		cl.ProduceSync(ctx, &kgo.Record{Key: []byte(user), Value: []byte(p)})
	}
	cl.Close()

	write := func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Payment]) error {
		for _, r := range b.Records {
			_, err := tx.Exec(ctx, `INSERT INTO payments (id, user_id, cents) VALUES ($1, $2, $3)
				ON CONFLICT (id) DO NOTHING`, r.Value.ID, r.Key, r.Value.Cents)
			if err != nil {
				return err
			}
		}
		return nil
	}
	sink, err := pgsink.New(pgsink.Config{
		Brokers:  []string{addr},
		Group:    "payments-sink",
		Topics:   []string{"payments"},
		Postgres: conn,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, serde.String, serde.JSON[Payment](), write)
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sink.Run(runCtx) }()
	for deadline := time.Now().Add(time.Minute); sink.Stats().Records < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}

	rows, _ := pool.Query(ctx, `SELECT user_id, count(*), sum(cents) FROM payments GROUP BY user_id ORDER BY user_id`)
	for rows.Next() {
		var user string
		var n, cents int64
		rows.Scan(&user, &n, &cents)
		fmt.Println(user, n, cents)
	}
	var next int64
	pool.QueryRow(ctx, `SELECT next_offset FROM sluice_sink_offsets WHERE group_id = 'payments-sink'`).Scan(&next)
	fmt.Println("resume at offset", next)
	// Output:
	// alice 2 700
	// bob 1 300
	// resume at offset 4
}
