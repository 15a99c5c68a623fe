package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/outbox"
	"github.com/sluicehq/sluice/txn/pgtest"
	"github.com/sluicehq/sluice/txn/txntest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	pgtest.Main(m)
}

// The topic the tests relay to, and its partitions.
const (
	eventsTopic = "events"
	partitions  = 4
)

// testEnv is an embedded broker with the events topic, and a database of
// its own.
type testEnv struct {
	brokers []string
	conn    string
	pool    *pgxpool.Pool
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	c, addr, err := broker.Start(broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &testEnv{brokers: []string{addr}, conn: pgtest.DB(t)}
	pc, err := pgxpool.ParseConfig(e.conn)
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 32 // the writers' and the test's
	if e.pool, err = pgxpool.NewWithConfig(context.Background(), pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if err := (outbox.Table{}).Create(context.Background(), e.pool); err != nil {
		t.Fatal(err)
	}
	e.createTopic(t, eventsTopic, partitions)
	return e
}

func (e *testEnv) createTopic(t testing.TB, topic string, parts int32) {
	t.Helper()
	resp, err := kadm.NewClient(e.client(t)).CreateTopic(context.Background(), parts, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (e *testEnv) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	return pgtest.Count(t, e.pool, sql, args...)
}

// tableEmpty is a condition: the outbox table holds no row, so every row
// written was relayed (rows are deleted only behind the committed
// cursor).
func (e *testEnv) tableEmpty(t testing.TB) func() (bool, error) {
	return func() (bool, error) {
		var n int64
		err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM sluice_outbox").Scan(&n)
		return n == 0, err
	}
}

// message returns the n-th message of key: value "key n".
func message(key string, n int) outbox.Message {
	return outbox.Message{Topic: eventsTopic, Key: []byte(key), Value: []byte(key + " " + strconv.Itoa(n)),
		Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(strconv.Itoa(n))}}}
}

// writers write messages to the outbox in concurrent transactions. Each
// writer owns its keys and writes the n-th message of a key only after
// the (n-1)-th committed, so each key's commit order is n's order. Some
// transactions roll back (their n's are written again by the next), and
// with long set one writer keeps each of its transactions open, holding
// an early transaction id, until another writer with a higher id has
// committed.
type writers struct {
	pool  *pgxpool.Pool
	table outbox.Table

	mu        sync.Mutex
	committed map[string]int // per key: messages committed
	txns      int            // transactions committed
	rollbacks int
	maxXid    uint64 // the highest id of a committed transaction
	late      int    // long transactions that committed after a higher id had
	changed   chan struct{}
	backlog   int64 // writers wait while the table holds more rows than this (0: never)

	wg   sync.WaitGroup
	stop context.CancelFunc
	errs []error
}

// startWriters starts n writers (n-1 short ones and, with long, one long
// one), seeded by seed.
func startWriters(t testing.TB, pool *pgxpool.Pool, table outbox.Table, n int, long bool, backlog int64, seed uint64) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{pool: pool, table: table, committed: map[string]int{}, changed: make(chan struct{}),
		backlog: backlog, stop: cancel}
	for i := range n {
		isLong := long && i == n-1
		w.wg.Go(func() {
			if err := w.run(ctx, i, isLong, rand.New(rand.NewPCG(seed, uint64(i)))); err != nil && ctx.Err() == nil {
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Errorf("writer %d: %w", i, err))
				w.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() { w.halt(t) })
	return w
}

// halt stops the writers and fails t if one failed.
func (w *writers) halt(t testing.TB) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		t.Error(err)
	}
	w.errs = nil
}

// counts returns a copy of the committed messages per key, and the
// number of committed transactions.
func (w *writers) counts() (map[string]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]int, len(w.committed))
	for k, v := range w.committed {
		m[k] = v
	}
	return m, w.txns
}

func (w *writers) run(ctx context.Context, id int, long bool, rng *rand.Rand) error {
	keys := make([]string, 4)
	for j := range keys {
		keys[j] = fmt.Sprintf("w%d-k%d", id, j)
		if long {
			keys[j] = fmt.Sprintf("long-k%d", j)
		}
	}
	// A transaction, once begun, runs to its end whatever ctx does: a
	// commit cut by a cancellation has an outcome the writer would not
	// know (and count).
	txCtx := context.WithoutCancel(ctx)
	next := map[string]int{}
	for txn := 0; ctx.Err() == nil; txn++ {
		if w.backlog > 0 && txn%10 == 0 {
			if err := w.waitBacklog(ctx); err != nil {
				return nil
			}
		}
		tx, err := w.pool.Begin(txCtx)
		if err != nil {
			return err
		}
		pending := map[string]int{}
		write := func() error {
			k := keys[rng.IntN(len(keys))]
			err := w.table.Write(txCtx, tx, message(k, next[k]+pending[k]))
			pending[k]++
			return err
		}
		var xid uint64
		for range 1 + rng.IntN(4) {
			if err := write(); err != nil {
				tx.Rollback(txCtx)
				return err
			}
		}
		if err := tx.QueryRow(txCtx, "SELECT pg_current_xact_id()").Scan(&xid); err != nil {
			tx.Rollback(txCtx)
			return err
		}
		if long {
			// Hold the early id until a younger transaction commits.
			if err := w.waitXidAbove(ctx, xid); err != nil {
				tx.Rollback(txCtx)
				return nil
			}
			if err := write(); err != nil {
				tx.Rollback(txCtx)
				return err
			}
		}
		if !long && rng.IntN(10) == 0 {
			if err := tx.Rollback(txCtx); err != nil {
				return err
			}
			w.mu.Lock()
			w.rollbacks++
			w.mu.Unlock()
			continue
		}
		if err := tx.Commit(txCtx); err != nil {
			return err
		}
		for k, c := range pending {
			next[k] += c
		}
		w.mu.Lock()
		for k, c := range pending {
			w.committed[k] += c
		}
		w.txns++
		if long && w.maxXid > xid {
			w.late++
		}
		w.maxXid = max(w.maxXid, xid)
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	return nil
}

// waitXidAbove waits until a transaction with an id above xid committed.
func (w *writers) waitXidAbove(ctx context.Context, xid uint64) error {
	for {
		w.mu.Lock()
		ok, ch := w.maxXid > xid, w.changed
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// waitBacklog waits while the outbox table holds more than w.backlog rows.
func (w *writers) waitBacklog(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int64
		if err := w.pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{w.tableName()}.Sanitize()).Scan(&n); err != nil {
			return err
		}
		if n <= w.backlog {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (w *writers) tableName() string {
	if w.table.Name == "" {
		return outbox.DefaultTable
	}
	return w.table.Name
}

// delivered is a record of the events topic as a reader delivered it.
type delivered struct {
	partition int32
	offset    int64
	key       string
	value     string
	header    string // the value of header "n"
}

// checkDelivered returns what is wrong with recs against the committed
// messages per key: each key's messages must come exactly once each, in
// their order (n = 0, 1, 2, ... in offset order), all of them, and
// nothing else.
func checkDelivered(recs []delivered, committed map[string]int) []string {
	slices.SortFunc(recs, func(a, b delivered) int {
		if a.partition != b.partition {
			return int(a.partition - b.partition)
		}
		return int(a.offset - b.offset)
	})
	var bad []string
	next := map[string]int{}
	part := map[string]int32{}
	for _, r := range recs {
		k, nstr, ok := strings.Cut(r.value, " ")
		n, err := strconv.Atoi(nstr)
		if !ok || err != nil || k != r.key || r.header != nstr {
			bad = append(bad, fmt.Sprintf("%d@%d: key %q value %q header n=%q: malformed", r.partition, r.offset, r.key, r.value, r.header))
			continue
		}
		if p, ok := part[k]; ok && p != r.partition {
			bad = append(bad, fmt.Sprintf("key %s in partitions %d and %d", k, p, r.partition))
		}
		part[k] = r.partition
		switch want := next[k]; {
		case n == want:
			next[k]++
		case n < want:
			bad = append(bad, fmt.Sprintf("%d@%d: %s %d again or out of order (after %d)", r.partition, r.offset, k, n, want-1))
		default:
			bad = append(bad, fmt.Sprintf("%d@%d: %s %d follows %d: %d..%d missing or late", r.partition, r.offset, k, n, want-1, want, n-1))
			next[k] = n + 1
		}
	}
	for k, c := range committed {
		if next[k] != c {
			bad = append(bad, fmt.Sprintf("key %s: %d messages committed, delivered up to %d", k, c, next[k]))
		}
	}
	for k := range next {
		if _, ok := committed[k]; !ok {
			bad = append(bad, fmt.Sprintf("key %s delivered but never committed", k))
		}
	}
	slices.Sort(bad)
	return bad
}

// readFranz reads the events topic with franz-go, read_committed, with
// the limits lim, up to its read_committed end.
func (e *testEnv) readFranz(ctx context.Context, lim txntest.Limits) ([]delivered, error) {
	var recs []delivered
	err := txntest.ReadCommittedWith(ctx, e.brokers, eventsTopic, lim, func(r *kgo.Record) {
		var n string
		for _, h := range r.Headers {
			if h.Key == "n" {
				n = string(h.Value)
			}
		}
		recs = append(recs, delivered{r.Partition, r.Offset, string(r.Key), string(r.Value), n})
	}, func() bool { return true })
	return recs, err
}

// kcatLimits are librdkafka's fetch.max.bytes and
// max.partition.fetch.bytes: its least (one batch per partition per
// fetch) and its defaults.
var kcatLimits = [][2]int{{1000, 1}, {64 << 20, 1 << 20}}

// readKcat reads the events topic with librdkafka (kcat), read_committed,
// with the limits lim, to the end of each partition (its last stable
// offset).
func (e *testEnv) readKcat(ctx context.Context, t testing.TB, lim [2]int) []delivered {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat (librdkafka's command-line client) is not installed: run `make kcat`, which installs Debian's kcat package: %v", err)
	}
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", e.brokers[0], "-t", eventsTopic, "-o", "beginning", "-e", "-q",
		"-f", `%p %o %h %k %s\n`,
		"-X", "isolation.level=read_committed",
		"-X", "fetch.max.bytes="+strconv.Itoa(lim[0]),
		"-X", "max.partition.fetch.bytes="+strconv.Itoa(lim[1]),
		"-X", "message.max.bytes=1000",
		"-X", "fetch.wait.max.ms=10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat read with %v: %v: %s", lim, err, stderr.String())
	}
	var recs []delivered
	for line := range strings.Lines(string(out)) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 5)
		if len(f) != 5 {
			t.Fatalf("kcat printed %q", line)
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("kcat printed %q", line)
		}
		recs = append(recs, delivered{int32(p), o, f[3], f[4], strings.TrimPrefix(f[2], "n=")})
	}
	return recs
}

// verify reads the events topic with franz-go and with librdkafka, each
// with small and large fetches, and fails t unless each read delivers
// every committed message exactly once, in order per key, and nothing
// else. It returns the number of records read.
func (e *testEnv) verify(t testing.TB, committed map[string]int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 0
	for _, lim := range txntest.Readers {
		recs, err := e.readFranz(ctx, lim)
		if err != nil {
			t.Fatal(err)
		}
		if bad := checkDelivered(recs, committed); len(bad) > 0 {
			t.Errorf("franz-go with %v: %d problems, first: %s", lim, len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
		}
		n = len(recs)
	}
	for _, lim := range kcatLimits {
		recs := e.readKcat(ctx, t, lim)
		if bad := checkDelivered(recs, committed); len(bad) > 0 {
			t.Errorf("librdkafka (kcat) with fetch.max.bytes=%d max.partition.fetch.bytes=%d: %d problems, first: %s",
				lim[0], lim[1], len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
		}
	}
	return n
}

// cursorRecord is a committed record of the cursor topic.
type cursorRecord struct {
	offset int64
	outbox.Cursor
	Owner string `json:"owner"`
}

// checkCursorChain reads the cursor topic (read_committed) and returns
// relay name's records, its number of sessions and what is wrong with its
// chain of cursors: each committed
// cursor is at or after the one before; a session's first record (its
// claim) repeats the cursor before it; a session, once another has
// claimed, never commits again (a zombie's commit).
func (e *testEnv) checkCursorChain(t testing.TB, name string) (recs []cursorRecord, sessions int, bad []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := txntest.ReadCommitted(ctx, e.brokers, outbox.DefaultCursorTopic, func(r *kgo.Record) {
		if string(r.Key) != name {
			return
		}
		c := cursorRecord{offset: r.Offset}
		if err := json.Unmarshal(r.Value, &c); err != nil {
			bad = append(bad, fmt.Sprintf("@%d: %v", r.Offset, err))
			return
		}
		recs = append(recs, c)
	}, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	ended := map[string]bool{}
	var prev cursorRecord
	for i, c := range recs {
		if i > 0 && c.Owner != prev.Owner {
			ended[prev.Owner] = true
			sessions++
			if ended[c.Owner] {
				bad = append(bad, fmt.Sprintf("@%d: session %s commits again after %s claimed", c.offset, c.Owner, prev.Owner))
			}
			if c.Cursor != prev.Cursor {
				bad = append(bad, fmt.Sprintf("@%d: session %s claimed %v, but the last committed cursor was %v", c.offset, c.Owner, c.Cursor, prev.Cursor))
			}
		}
		if i > 0 && c.Compare(prev.Cursor) < 0 {
			bad = append(bad, fmt.Sprintf("@%d: cursor %v goes back from %v", c.offset, c.Cursor, prev.Cursor))
		}
		prev = c
	}
	return recs, sessions + min(len(recs), 1), bad
}

// dumpTopic returns topic's whole log, read_uncommitted with its
// transaction markers: producer id and epoch, key and value of each
// record.
func (e *testEnv) dumpTopic(t testing.TB, topic string) string {
	cl := e.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	var b strings.Builder
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return b.String()
		}
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Fprintf(&b, "%d@%d producer %d epoch %d control=%v key=%q value=%q\n",
				r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch, r.Attrs.IsControl(), r.Key, r.Value)
		})
	}
}
