package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/pgsink"
	"github.com/sluicehq/sluice/txn/pgtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func config(e *testEnv, group string, topics ...string) pgsink.Config {
	return pgsink.Config{
		Brokers: e.brokers, Group: group, Topics: topics, Postgres: e.conn,
		SessionTimeout: 2 * time.Second, MaxBatchRecords: 100, Logger: quiet,
		ClientOpts: []kgo.Opt{kgo.HeartbeatInterval(200 * time.Millisecond)},
	}
}

// ordersCount returns a condition: the orders table has n rows.
func (e *testEnv) ordersCount(t testing.TB, n int64) func() (bool, error) {
	return func() (bool, error) { return e.count(t, "SELECT count(*) FROM orders") == n, nil }
}

// Records reach the table once each, aborted ones never, bad ones go to
// the dead-letter table; a new instance resumes from the offsets table.
func TestSinkWritesOnceAndResumes(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 4)
	e.produce(t, orderRecords("orders", 0, 600, 4), true)
	e.produce(t, orderRecords("orders", 5000, 5100, 4), false) // aborted: must never land
	bad := []*kgo.Record{
		{Topic: "orders", Partition: 2, Value: []byte("not json")},
		{Topic: "orders", Partition: 3, Value: nil},
	}
	e.produce(t, bad, true)
	e.produce(t, orderRecords("orders", 600, 1000, 4), true)

	s, err := pgsink.New(config(e, "g", "orders"), serde.String, orderSerde, writeOrders("one"))
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runSink(t, s)
	pgtest.WaitFor(t, time.Minute, "the first 1000 orders", func() (bool, error) {
		return e.count(t, "SELECT count(*) FROM orders") == 1000 && e.count(t, "SELECT count(*) FROM sluice_sink_dead_letters") == 2, nil
	})
	stop()
	st := s.Stats()
	if st.Records != 1000 || st.DeadLetters != 2 {
		t.Errorf("stats %+v: want 1000 records and 2 dead letters", st)
	}
	var topic, msg string
	var part int32
	var off int64
	if err := e.pool.QueryRow(context.Background(),
		"SELECT topic, partition, record_offset, error FROM sluice_sink_dead_letters WHERE partition = 2").Scan(&topic, &part, &off, &msg); err != nil {
		t.Fatal(err)
	}
	if topic != "orders" || !strings.Contains(msg, "decode value") {
		t.Errorf("dead letter %s[%d]@%d: %q", topic, part, off, msg)
	}

	e.produce(t, orderRecords("orders", 1000, 1500, 4), true)
	s2, err := pgsink.New(config(e, "g", "orders"), serde.String, orderSerde, writeOrders("two"))
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, s2)
	pgtest.WaitFor(t, time.Minute, "all orders", e.ordersCount(t, 1500))
	e.checkOrders(t, 1500)
	if n := e.count(t, "SELECT count(*) FROM orders WHERE writer = 'two'"); n != 500 {
		t.Errorf("the second instance wrote %d orders, want the 500 new ones", n)
	}
}

// The offsets table decides where a partition resumes, not Kafka's
// committed offsets.
func TestResumesFromTableNotKafka(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 1)
	e.produce(t, orderRecords("orders", 0, 300, 1), true)
	// Kafka says the group is done; the table says offset 100.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	var os kadm.Offsets
	os.AddOffset("orders", 0, 301, -1)
	if err := kadm.NewClient(cl).CommitAllOffsets(context.Background(), "g", os); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	s, err := pgsink.New(config(e, "g", "orders"), serde.String, orderSerde, writeOrders("one"))
	if err != nil {
		t.Fatal(err)
	}
	// The row a previous run would have left.
	if err := pgsink.CreateTables(context.Background(), e.pool, config(e, "g", "orders")); err != nil {
		t.Fatal(err)
	}
	e.exec(t, "INSERT INTO sluice_sink_offsets (group_id, topic, partition, next_offset, epoch) VALUES ('g', 'orders', 0, 100, 7)")
	runSink(t, s)
	pgtest.WaitFor(t, time.Minute, "the rest", e.ordersCount(t, 200))
	if n := e.count(t, "SELECT count(*) FROM orders"); n != 200 {
		t.Errorf("%d orders, want the 200 from offset 100 on", n)
	}
	if n := e.count(t, "SELECT min(id) FROM orders"); n != 100 {
		t.Errorf("first order %d, want 100", n)
	}
	if n := e.count(t, "SELECT epoch FROM sluice_sink_offsets"); n != 8 {
		t.Errorf("epoch %d after an assignment, want 8", n)
	}
}

// A batch whose partition was taken over before it began commits
// nothing; the sink rejoins, resumes from the table and writes each order
// once.
func TestFencedBatchCommitsNothing(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 2)
	e.produce(t, orderRecords("orders", 0, 400, 2), true)
	s, err := pgsink.New(config(e, "g", "orders"), serde.String, orderSerde, writeOrders("one"))
	if err != nil {
		t.Fatal(err)
	}
	var bumped, sawFence bool
	pgsink.SetBeforeBegin(s, func(spans []pgsink.Span) {
		if bumped {
			return
		}
		bumped = true
		// Another instance takes the partitions over (and, as an owner
		// would, leaves next_offset where it was).
		e.exec(t, "UPDATE sluice_sink_offsets SET epoch = epoch + 1")
		sawFence = true
	})
	runSink(t, s)
	pgtest.WaitFor(t, time.Minute, "all orders", e.ordersCount(t, 400))
	if !sawFence {
		t.Fatal("no batch was begun")
	}
	if st := s.Stats(); st.Fenced != 1 || st.Rejoins < 1 {
		t.Errorf("stats %+v: want 1 fenced batch and a rejoin", st)
	}
	e.checkOrders(t, 400)
}

// A record that does not decode stops the sink under OnErrorFail, with
// its topic, partition and offset; nothing of its batch is written.
func TestOnErrorFailNamesRecord(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 1)
	e.produce(t, orderRecords("orders", 0, 5, 1), true)
	e.produce(t, []*kgo.Record{{Topic: "orders", Value: []byte("{oops")}}, true)
	cfg := config(e, "g", "orders")
	cfg.OnError = pgsink.OnErrorFail
	cfg.MaxBatchRecords = 1000
	s, err := pgsink.New(cfg, serde.String, orderSerde, writeOrders("one"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.Run(ctx)
	re, ok := errors.AsType[*pgsink.RecordError](err)
	if !ok {
		t.Fatalf("Run: %v, want a *RecordError", err)
	}
	// Offset 5: the first transaction's records and its commit marker.
	if re.Topic != "orders" || re.Partition != 0 || re.Offset != 6 || !strings.Contains(err.Error(), "orders[0]@6") {
		t.Errorf("error %q names %s[%d]@%d", err, re.Topic, re.Partition, re.Offset)
	}
	if n := e.count(t, "SELECT count(*) FROM orders"); n != 5 && n != 0 {
		t.Errorf("%d orders written", n)
	}
}

// A write function's own error stops the sink with the batch's offsets;
// the batch is rolled back.
func TestWriteErrorStopsAndRollsBack(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 1)
	e.produce(t, orderRecords("orders", 0, 10, 1), true)
	boom := errors.New("no such customer")
	s, err := pgsink.New(config(e, "g", "orders"), serde.String, orderSerde,
		func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Order]) error {
			if err := insertOrders(ctx, tx, b, "one", 0, len(b.Records)); err != nil {
				return err
			}
			return boom
		})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.Run(ctx)
	we, ok := errors.AsType[*pgsink.WriteError](err)
	if !ok || !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want a *WriteError wrapping the write's error", err)
	}
	if !strings.Contains(err.Error(), "orders[0]@0..9") || len(we.Spans) != 1 {
		t.Errorf("error %q", err)
	}
	if n := e.count(t, "SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written by a failed batch", n)
	}
	if n := e.count(t, "SELECT next_offset FROM sluice_sink_offsets"); n != -1 {
		t.Errorf("next offset %d after a failed batch, want -1 (none committed)", n)
	}
}

func TestConfigValidate(t *testing.T) {
	err := pgsink.Config{OffsetsTable: "a.b.c"}.Validate()
	for _, want := range []string{"no brokers", "no group", "no topics", "no database", `"a.b.c"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to say %q", err, want)
		}
	}
	if _, err := pgsink.ParseErrorPolicy("dlq"); err != nil {
		t.Error(err)
	}
	if _, err := pgsink.ParseErrorPolicy("retry"); err == nil {
		t.Error("ParseErrorPolicy(retry) succeeded")
	}
}

// A transient error while the sink creates its tables at start (here
// Config.Setup's first call fails as a transaction ended by
// idle_in_transaction_session_timeout does, as a loaded machine gets) is
// retried, not fatal: the sink goes on and writes.
func TestTransientErrorCreatingTablesIsRetried(t *testing.T) {
	e := newEnv(t)
	e.createTopic(t, "orders", 2)
	e.produce(t, orderRecords("orders", 0, 100, 2), true)
	cfg := config(e, "g", "orders")
	var setups atomic.Int64
	cfg.Setup = func(context.Context, pgx.Tx) error {
		if setups.Add(1) == 1 {
			return &pgconn.PgError{Code: "25P03", Message: "terminating connection due to idle-in-transaction timeout"}
		}
		return nil
	}
	s, err := pgsink.New(cfg, serde.String, orderSerde, writeOrders("one"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	pgtest.WaitFor(t, time.Minute, "the orders", func() (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("Run returned: %v", err)
		default:
		}
		return e.count(t, "SELECT count(*) FROM orders") == 100, nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := setups.Load(); n != 2 {
		t.Errorf("Setup ran %d times, want 2 (the failure, then the retry)", n)
	}
}
