package outbox_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/outbox"
	"github.com/sluicehq/sluice/txn/pgtest"
	"github.com/sluicehq/sluice/txn/txntest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newRelay returns a relay of e's database and broker, named name.
func (e *testEnv) newRelay(t testing.TB, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	cfg.Brokers, cfg.Postgres = e.brokers, e.conn
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	r, err := outbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs r until the test ends (or stop is called), and returns a
// channel of Run's result.
func run(t testing.TB, r *outbox.Relay) (stop func(), done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- r.Run(ctx) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-ch; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop, ch
}

func write(t testing.TB, e *testEnv, table outbox.Table, msgs ...outbox.Message) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), e.pool, func(tx pgx.Tx) error {
		return table.Write(context.Background(), tx, msgs...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A row becomes a record with its topic (or the relay's default), key,
// value, headers and created_at as timestamp; relayed rows are deleted;
// a restarted relay resumes from its cursor.
func TestRelayRecordsAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w := outbox.NewWriter(outbox.Table{}, "", serde.String, serde.Int64)
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if err := (outbox.Table{}).Write(ctx, tx,
			outbox.Message{Topic: eventsTopic, Key: []byte("a"), Value: []byte("one"),
				Headers: []kgo.RecordHeader{{Key: "h1", Value: []byte("x")}, {Key: "h2", Value: nil}}},
			outbox.Message{Topic: eventsTopic, Value: []byte("keyless")}); err != nil {
			return err
		}
		return w.Write(ctx, tx, "b", 42) // no topic: the relay's
	})
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	if err := e.pool.QueryRow(ctx, "SELECT min(created_at) FROM sluice_outbox").Scan(&created); err != nil {
		t.Fatal(err)
	}
	r := e.newRelay(t, outbox.Config{Topic: "other"})
	e.createTopic(t, "other", 1)
	stop, _ := run(t, r)
	pgtest.WaitFor(t, time.Minute, "the rows to be relayed and deleted", e.tableEmpty(t))
	stop()
	if s := r.Stats(); s.Rows != 3 || s.Batches != 1 || s.Deleted != 3 {
		t.Errorf("stats %+v, want 3 rows in 1 batch, 3 deleted", s)
	}
	recs := readAll(t, e, eventsTopic)
	if len(recs) != 2 {
		t.Fatalf("%d records in %s, want 2", len(recs), eventsTopic)
	}
	for _, r := range recs {
		if !r.Timestamp.Equal(created.Truncate(time.Millisecond)) { // Kafka keeps milliseconds
			t.Errorf("%q: timestamp %v, want created_at %v", r.Value, r.Timestamp, created)
		}
	}
	byValue := map[string]*kgo.Record{string(recs[0].Value): recs[0], string(recs[1].Value): recs[1]}
	one, keyless := byValue["one"], byValue["keyless"]
	if one == nil || keyless == nil {
		t.Fatalf("records %q, %q", recs[0].Value, recs[1].Value)
	}
	if string(one.Key) != "a" || len(one.Headers) != 2 || one.Headers[0].Key != "h1" || string(one.Headers[0].Value) != "x" ||
		one.Headers[1].Key != "h2" || one.Headers[1].Value != nil {
		t.Errorf("record one: key %q headers %+v", one.Key, one.Headers)
	}
	if keyless.Key != nil || keyless.Headers != nil {
		t.Errorf("record keyless: key %q headers %+v", keyless.Key, keyless.Headers)
	}
	other := readAll(t, e, "other")
	if len(other) != 1 || string(other[0].Key) != "b" || len(other[0].Value) != 8 {
		t.Fatalf("topic other: %d records, want b=42", len(other))
	}

	// A new relay of the same name resumes after the cursor.
	write(t, e, outbox.Table{}, message("c", 0))
	r2 := e.newRelay(t, outbox.Config{Topic: "other"})
	stop2, _ := run(t, r2)
	pgtest.WaitFor(t, time.Minute, "the new row to be relayed", e.tableEmpty(t))
	stop2()
	if s := r2.Stats(); s.Rows != 1 {
		t.Errorf("the restarted relay relayed %d rows, want 1", s.Rows)
	}
	if n := len(readAll(t, e, eventsTopic)); n != 3 {
		t.Errorf("%d records in %s, want 3", n, eventsTopic)
	}
	if recs, sessions, bad := e.checkCursorChain(t, "test"); len(bad) > 0 || sessions != 2 {
		t.Errorf("cursor chain: %d records, %d sessions (want 2): %v", len(recs), sessions, bad)
	}
}

// readAll reads topic with read_committed up to its end.
func readAll(t testing.TB, e *testEnv, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	if err := txntest.ReadCommitted(ctx, e.brokers, topic, func(r *kgo.Record) { recs = append(recs, r) }, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// The horizon: a transaction that took its id first (L) and commits after
// a younger one (S) is relayed, before S. Without the horizon the relay
// passes S, moves its cursor past L's id, and L is never relayed (and
// deleted unseen): the skip the horizon is there for.
func TestHorizonWaitsForAnOlderTransaction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		horizon bool
	}{{"horizon", true}, {"no horizon", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			r := e.newRelay(t, outbox.Config{})
			if !tc.horizon {
				outbox.SetNoHorizon(r)
			}
			stop, _ := run(t, r)
			pgtest.WaitFor(t, time.Minute, "the relay to poll", func() (bool, error) { return r.Stats().Polls > 0, nil })

			long, err := e.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer long.Rollback(ctx)
			if err := (outbox.Table{}).Write(ctx, long, message("L", 0)); err != nil {
				t.Fatal(err)
			}
			write(t, e, outbox.Table{}, message("S", 0))
			var longXid, shortXid uint64
			if err := long.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&longXid); err != nil {
				t.Fatal(err)
			}
			if err := e.pool.QueryRow(ctx, "SELECT xid FROM sluice_outbox WHERE key = 'S'").Scan(&shortXid); err != nil {
				t.Fatal(err)
			}
			if longXid >= shortXid {
				t.Fatalf("L's id %d not below S's %d", longXid, shortXid)
			}
			// Two polls that began after S committed.
			polls := r.Stats().Polls
			pgtest.WaitFor(t, time.Minute, "two more polls", func() (bool, error) { return r.Stats().Polls >= polls+2, nil })
			if got := r.Stats().Rows; tc.horizon && got != 0 {
				t.Fatalf("the relay relayed %d rows while an older transaction was open", got)
			} else if !tc.horizon && got != 1 {
				t.Fatalf("without the horizon the relay relayed %d rows, want S", got)
			}
			if err := long.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.horizon {
				pgtest.WaitFor(t, time.Minute, "L and S to be relayed", e.tableEmpty(t))
			} else {
				polls := r.Stats().Polls
				pgtest.WaitFor(t, time.Minute, "two more polls", func() (bool, error) { return r.Stats().Polls >= polls+2, nil })
			}
			stop()
			var got []string
			for _, rec := range readAll(t, e, eventsTopic) {
				got = append(got, string(rec.Value))
			}
			slices.Sort(got)
			if tc.horizon {
				// Both, L first: the relay reads in (xid, seq) order and
				// its cursor ends at S.
				if strings.Join(got, ",") != "L 0,S 0" || r.Stats().Cursor.Xid != shortXid {
					t.Fatalf("relayed %q, cursor %v; want L and S, S last (xid %d)", got, r.Stats().Cursor, shortXid)
				}
				return
			}
			// S only: L committed behind the cursor and is never relayed
			// (the cleaner may even delete it, unseen).
			if strings.Join(got, ",") != "S 0" || r.Stats().Cursor.Xid != shortXid {
				t.Fatalf("without the horizon: relayed %q, cursor %v; want S only", got, r.Stats().Cursor)
			}
		})
	}
}

// Concurrent writers whose transactions interleave, one of them holding
// an early id until younger ones committed: every message is relayed
// exactly once, none skipped, in commit order per key; read by franz-go
// and librdkafka, with small and large fetches.
func TestConcurrentInterleavedWriters(t *testing.T) {
	e := newEnv(t)
	r := e.newRelay(t, outbox.Config{MaxBatchRows: 37})
	stop, _ := run(t, r)
	ws := startWriters(t, e.pool, outbox.Table{}, 5, true, 0, 1)
	pgtest.WaitFor(t, 2*time.Minute, "1,500 committed transactions, 20 of them long ones committed late", func() (bool, error) {
		_, txns := ws.counts()
		ws.mu.Lock()
		late := ws.late
		ws.mu.Unlock()
		return txns >= 1500 && late >= 20, nil
	})
	ws.halt(t)
	committed, txns := ws.counts()
	pgtest.WaitFor(t, 2*time.Minute, "every row to be relayed", e.tableEmpty(t))
	stop()
	n := e.verify(t, committed)
	if _, _, bad := e.checkCursorChain(t, "test"); len(bad) > 0 {
		t.Errorf("cursor chain: %v", bad)
	}
	t.Logf("%d transactions (%d rolled back, %d long ones committed after a younger one), %d messages relayed in %d batches",
		txns, ws.rollbacks, ws.late, n, r.Stats().Batches)
}

// With KeyOrder, a transaction whose id is below that of one that already
// wrote the key is refused, whether that one has committed or is still
// open (the write waits for it); the relay removes the entries of the
// keys it relayed.
func TestKeyOrder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	table := outbox.Table{KeyOrder: true}
	if err := table.Create(ctx, e.pool); err != nil {
		t.Fatal(err)
	}
	begin := func() pgx.Tx {
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(ctx) })
		// An id now: a first write, of another key.
		if err := table.Write(ctx, tx, outbox.Message{Topic: eventsTopic, Value: []byte("first")}); err != nil {
			t.Fatal(err)
		}
		return tx
	}

	// The younger one committed first.
	older, younger := begin(), begin()
	if err := table.Write(ctx, younger, message("K", 0)); err != nil {
		t.Fatal(err)
	}
	if err := younger.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err := table.Write(ctx, older, message("K", 1))
	if koe, ok := errors.AsType[*outbox.KeyOrderError](err); !ok || string(koe.Key) != "K" {
		t.Fatalf("the older transaction's write after the younger's commit: %v, want a *KeyOrderError for K", err)
	}
	older.Rollback(ctx)

	// The younger one still open: the older one waits, then is refused.
	older, younger = begin(), begin()
	if err := table.Write(ctx, younger, message("J", 0)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- table.Write(ctx, older, message("J", 1)) }()
	pgtest.WaitFor(t, time.Minute, "the older write to wait on the younger's lock", func() (bool, error) {
		var n int64
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()").Scan(&n)
		return n > 0, err
	})
	if err := younger.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.As(err, new(*outbox.KeyOrderError)) {
		t.Fatalf("the older transaction's write after waiting: %v, want a *KeyOrderError", err)
	}
	older.Rollback(ctx)

	// The older one first: the younger waits and goes on.
	older, younger = begin(), begin()
	if err := table.Write(ctx, older, message("I", 0)); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- table.Write(ctx, younger, message("I", 1)) }()
	if err := older.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("the younger transaction's write: %v", err)
	}
	if err := younger.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// And a retry of a refused transaction goes through.
	write(t, e, table, message("K", 1))

	if n := e.count(t, "SELECT count(*) FROM sluice_outbox_keys"); n != 3 {
		t.Fatalf("%d key entries, want 3 (K, I, J)", n)
	}
	r := e.newRelay(t, outbox.Config{KeyOrder: true})
	stop, _ := run(t, r)
	pgtest.WaitFor(t, time.Minute, "every row and key entry to be removed", func() (bool, error) {
		var rows, keys int64
		err := e.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM sluice_outbox), (SELECT count(*) FROM sluice_outbox_keys)").Scan(&rows, &keys)
		return rows == 0 && keys == 0, err
	})
	stop()
	if bad := checkDelivered(keyed(readAll(t, e, eventsTopic)), map[string]int{"K": 2, "J": 1, "I": 2}); len(bad) > 0 {
		t.Errorf("%v", bad)
	}
}

func keyed(recs []*kgo.Record) []delivered {
	var out []delivered
	for _, r := range recs {
		if r.Key == nil {
			continue
		}
		var n string
		for _, h := range r.Headers {
			if h.Key == "n" {
				n = string(h.Value)
			}
		}
		out = append(out, delivered{r.Partition, r.Offset, string(r.Key), string(r.Value), n})
	}
	return out
}

// A row with no topic (and no default), or for a topic that does not
// exist, stops the relay with a *RowError naming the row; nothing of its
// batch is committed.
func TestRowErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topic string
		want  error
	}{{"no topic", "", nil}, {"unknown topic", "nowhere", kerr.UnknownTopicOrPartition}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			write(t, e, outbox.Table{}, message("a", 0))
			write(t, e, outbox.Table{}, outbox.Message{Topic: tc.topic, Value: []byte("bad")})
			var xid uint64
			var seq int64
			if err := e.pool.QueryRow(context.Background(), "SELECT xid, seq FROM sluice_outbox WHERE value = 'bad'").Scan(&xid, &seq); err != nil {
				t.Fatal(err)
			}
			r := e.newRelay(t, outbox.Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := r.Run(ctx)
			re, ok := errors.AsType[*outbox.RowError](err)
			if !ok || re.Xid != xid || re.Seq != seq || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Run: %v; want a *RowError for (xid %d, seq %d) wrapping %v", err, xid, seq, tc.want)
			}
			if got := len(readAll(t, e, eventsTopic)); got != 0 {
				t.Errorf("%d records committed of the failed batch", got)
			}
			t.Log(err)
		})
	}
}
