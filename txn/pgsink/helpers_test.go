package pgsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/pgsink"
	"github.com/sluicehq/sluice/txn/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	pgtest.Main(m)
}

// Order is the test records' value.
type Order struct {
	ID      int64  `json:"id"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

var orderSerde = serde.JSON[Order]()

// order returns the i-th test order: amounts and accounts vary so that a
// lost or doubled order changes the sums.
func order(i int64) Order {
	return Order{ID: i, Account: "acct-" + strconv.FormatInt(i%37, 10), Amount: i%97 + 1}
}

// testEnv is an embedded broker and a database of its own.
type testEnv struct {
	brokers []string
	conn    string
	pool    *pgxpool.Pool
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{Opts: []kfake.Opt{kfake.GroupMinSessionTimeout(200 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &testEnv{brokers: []string{addr}, conn: pgtest.DB(t)}
	e.pool, err = pgxpool.New(context.Background(), e.conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	e.exec(t, ordersDDL)
	return e
}

// ordersDDL is the test sink's tables: orders without ON CONFLICT, so
// that a second write of an order fails the batch instead of hiding, and
// one row per committed span, to check offsets and epochs.
const ordersDDL = `
CREATE TABLE orders (id bigint PRIMARY KEY, account text NOT NULL, amount bigint NOT NULL,
	topic text NOT NULL, partition int NOT NULL, record_offset bigint NOT NULL, writer text NOT NULL);
CREATE TABLE spans (topic text NOT NULL, partition int NOT NULL, from_offset bigint NOT NULL,
	next_offset bigint NOT NULL, epoch bigint NOT NULL, writer text NOT NULL,
	committed_at timestamptz NOT NULL DEFAULT clock_timestamp())`

func (e *testEnv) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *testEnv) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	return pgtest.Count(t, e.pool, sql, args...)
}

func (e *testEnv) createTopic(t testing.TB, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

// produce writes recs in one Kafka transaction, committed or aborted.
func (e *testEnv) produce(t testing.TB, recs []*kgo.Record, commit bool) {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID(fmt.Sprintf("producer-%d", time.Now().UnixNano())),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

// orderRecords returns orders from..to-1 as records, order i to
// partition i mod partitions.
func orderRecords(topic string, from, to int64, partitions int32) []*kgo.Record {
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		o := order(i)
		v, _ := json.Marshal(o)
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % int64(partitions)), Key: []byte(o.Account), Value: v})
	}
	return recs
}

// writeOrders is the test sink's write function: every order and every
// span, as writer.
func writeOrders(writer string) pgsink.WriteFunc[string, Order] {
	return func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Order]) error {
		return insertOrders(ctx, tx, b, writer, 0, len(b.Records))
	}
}

// insertOrders inserts the records from..to-1 of b, and b's spans when to
// is the end.
func insertOrders(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Order], writer string, from, to int) error {
	pb := &pgx.Batch{}
	for _, r := range b.Records[from:to] {
		pb.Queue(`INSERT INTO orders (id, account, amount, topic, partition, record_offset, writer) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.Value.ID, r.Value.Account, r.Value.Amount, r.Topic, r.Partition, r.Offset, writer)
	}
	if to == len(b.Records) {
		for _, s := range b.Spans {
			pb.Queue(`INSERT INTO spans (topic, partition, from_offset, next_offset, epoch, writer) VALUES ($1, $2, $3, $4, $5, $6)`,
				s.Topic, s.Partition, s.From, s.Next, s.Epoch, writer)
		}
	}
	return tx.SendBatch(ctx, pb).Close()
}

// checkOrders checks that the orders table holds orders 0..n-1 exactly
// once (the primary key forbids more) with the sums of a recomputation,
// and that the committed spans of each partition follow each other with
// no gap, no overlap and no epoch going back: an overlap would be a
// batch written twice, an older epoch after a newer one a zombie's
// commit.
func (e *testEnv) checkOrders(t testing.TB, n int64) {
	t.Helper()
	if got := e.count(t, "SELECT count(*) FROM orders"); got != n {
		t.Errorf("orders: %d rows, want %d", got, n)
	}
	if got := e.count(t, "SELECT count(*) FROM orders WHERE id < 0 OR id >= $1", n); got != 0 {
		t.Errorf("orders: %d rows with an id out of range", got)
	}
	want := map[string]int64{}
	for i := range n {
		o := order(i)
		want[o.Account] += o.Amount
	}
	rows, err := e.pool.Query(context.Background(), "SELECT account, sum(amount)::bigint FROM orders GROUP BY account")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var a string
		var s int64
		if err := rows.Scan(&a, &s); err != nil {
			t.Fatal(err)
		}
		got[a] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("account %s: sum %d, recomputed %d", a, got[a], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d accounts, want %d", len(got), len(want))
	}

	rows, err = e.pool.Query(context.Background(),
		"SELECT topic, partition, from_offset, next_offset, epoch, writer FROM spans ORDER BY topic, partition, from_offset")
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		topic string
		part  int32
	}
	last := map[key][2]int64{} // next offset, epoch
	for rows.Next() {
		var k key
		var from, next, epoch int64
		var writer string
		if err := rows.Scan(&k.topic, &k.part, &from, &next, &epoch, &writer); err != nil {
			t.Fatal(err)
		}
		if l, ok := last[k]; ok {
			if from < l[0] {
				t.Errorf("%s[%d]: span %d..%d (epoch %d, %s) overlaps the previous one, which ended at %d", k.topic, k.part, from, next, epoch, writer, l[0])
			}
			if epoch < l[1] {
				t.Errorf("%s[%d]: span %d..%d committed at epoch %d after epoch %d (a zombie's commit, by %s)", k.topic, k.part, from, next, epoch, l[1], writer)
			}
		}
		last[k] = [2]int64{next, epoch}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// runSink runs s until the test ends, and returns a channel of Run's
// result.
func runSink[K, V any](t testing.TB, s *pgsink.Sink[K, V]) (cancel func(), done <-chan error) {
	ctx, cancelCtx := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- s.Run(ctx) }()
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			cancelCtx()
			if err := <-ch; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop, ch
}
