package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/internal/pgsql"
)

// Stats are a relay's counters since New.
type Stats struct {
	Batches  int64 // Kafka transactions committed with rows
	Rows     int64 // rows relayed: produced in a committed transaction
	Polls    int64 // reads of the outbox table
	Deleted  int64 // relayed rows deleted from the table
	Sessions int64 // producer sessions: the first, and one more after each Kafka error
	// Unconfirmed counts the transactions franz-go reported committed
	// that the cursor topic shows were not (see the package
	// documentation); each sent the relay back to its last committed
	// cursor.
	Unconfirmed int64
	Cursor      Cursor // the last cursor committed
}

// Relay produces the rows of an outbox table to Kafka, exactly once and
// in (xid, seq) order. See the package documentation.
type Relay struct {
	cfg     Config
	table   string // quoted identifiers
	keys    string // "" without Config.KeyOrder
	txnID   string
	read    string // the SELECT of a batch
	pool    *pgxpool.Pool
	owners  map[string]bool // the sessions this relay started; only Run's goroutine uses it
	before  map[string]bool // the sessions whose cursors those found at their start; likewise
	lastErr error           // what ended the last session; only Run's goroutine uses it

	batches, rows, polls, deleted, sessions, unconfirmed atomic.Int64
	mu                                                   sync.Mutex
	cursor                                               Cursor

	// hook, when set (by tests), is called at each stage of a batch.
	hook func(s stage, b batchInfo)
}

// stage is a point of a batch's life, for tests.
type stage int

const (
	stageRead     stage = iota // rows read, before the transaction begins
	stageProduced              // rows and cursor flushed to the broker, before EndTxn
	stageCommit                // just before EndTxn(commit) is sent
	stageDone                  // the transaction committed
)

// batchInfo describes a batch to the hook.
type batchInfo struct {
	Owner      string
	From, Next Cursor // the cursor before and after the batch
	Rows       int    // 0 for a session's claim
}

// New returns a relay configured by cfg. It checks cfg (see
// Config.Validate) and connects to nothing: Run does.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Relay{cfg: cfg, txnID: TransactionalIDPrefix + cfg.Name, owners: map[string]bool{}, before: map[string]bool{}}
	r.table, _ = tableIdent(cfg.Table, "")
	if cfg.KeyOrder {
		r.keys, _ = tableIdent(cfg.Table, "_keys")
	}
	// The horizon: every transaction with an id below the snapshot's
	// xmin has ended, so no row with such an xid can appear later, and
	// a read after a cursor below it never passes a row that commits
	// afterwards.
	r.read = fmt.Sprintf(`SELECT xid, seq, topic, key, value, header_keys, header_values, created_at FROM %s
		WHERE (xid, seq) > ($1::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY xid, seq LIMIT $3`, r.table)
	return r, nil
}

// Stats returns the relay's counters. It is safe to call concurrently
// with Run.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	cur := r.cursor
	r.mu.Unlock()
	return Stats{Batches: r.batches.Load(), Rows: r.rows.Load(), Polls: r.polls.Load(), Deleted: r.deleted.Load(),
		Sessions: r.sessions.Load(), Unconfirmed: r.unconfirmed.Load(), Cursor: cur}
}

// retry is an error after which the relay starts a new producer session:
// it checks that no other relay took over, initializes its transactional
// id again (which aborts a transaction of ours still open) and reads its
// cursor back from the cursor topic, which knows what committed.
type retry struct{ err error }

func (r *retry) Error() string { return r.err.Error() }
func (r *retry) Unwrap() error { return r.err }

// Run creates the outbox table and the cursor topic when missing, and
// relays until ctx is cancelled. It returns nil on cancellation (a batch
// whose commit was sent is first waited for; one still producing is
// aborted), a *FencedError when another relay with the same name took
// over, a *RowError for a row that cannot be produced, and an error at
// start (a bad connection string, permissions, an unreachable broker).
//
// Everything else is survived in place: a failed read of the table is
// retried with the same producer; a Kafka error (a broker restart, a
// lost connection, a commit whose outcome is unknown, a transaction the
// broker aborted on its timeout) ends the producer session, and the
// relay starts a new one, after a pause that grows from 100ms to 5s
// while nothing commits.
//
// Run must not be called twice at once.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.Pool != nil {
		r.pool = r.cfg.Pool
	} else {
		pc, err := pgxpool.ParseConfig(r.cfg.Postgres)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
			pc.ConnConfig.RuntimeParams["application_name"] = "sluice-outbox " + r.cfg.Name
		}
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		defer pool.Close()
		r.pool = pool
	}
	if err := (Table{Name: r.cfg.Table, KeyOrder: r.cfg.KeyOrder}).Create(ctx, r.pool); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := createCursorTopic(ctx, r.cfg); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	cctx, stopCleaner := context.WithCancel(ctx)
	c := newCleaner(r)
	var wg sync.WaitGroup
	wg.Go(func() { c.run(cctx) })
	defer wg.Wait()
	defer stopCleaner()

	const minPause, maxPause = 100 * time.Millisecond, 5 * time.Second
	pause := minPause
	for {
		before := r.batches.Load()
		err := r.session(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		re, ok := err.(*retry) // only a session's own verdict: a *FencedError may wrap one
		if !ok {
			if err != nil {
				r.cfg.Logger.Error("outbox: relay stopped", "name", r.cfg.Name, "err", err)
			}
			return err
		}
		r.lastErr = re.err
		if r.batches.Load() > before {
			pause = minPause
		}
		r.cfg.Logger.Warn("outbox: starting a new producer session", "name", r.cfg.Name, "err", err, "pause", pause)
		if !sleep(ctx, pause) {
			return nil
		}
		pause = min(2*pause, maxPause)
	}
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// newOwner returns a new session's name: host, process and a random part.
func newOwner() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// session is one life of the relay's transactional producer: it fences
// any previous holder of the transactional id, reads the cursor back,
// claims it, and relays batches until ctx ends (nil), a Kafka error
// (*retry) or a fatal one.
func (r *Relay) session(ctx context.Context, c *cleaner) error {
	r.sessions.Add(1)
	if len(r.owners) > 0 {
		// A session of ours failed. Initializing the transactional id
		// again would fence whoever holds it now: first make sure that
		// no other relay claimed the cursor since: the last committed
		// cursor must be ours, or the one a session of ours found when
		// it started (its claim may not have committed). Up to the
		// last stable offset only: a transaction of ours may still be
		// open, holding it back until the InitProducerID below; and if
		// another relay had claimed the name, its InitProducerID would
		// have ended that transaction first.
		cur, found, err := readCursor(ctx, r.cfg, true)
		if err != nil {
			return &retry{err}
		}
		if found && !r.owners[cur.Owner] && !r.before[cur.Owner] {
			return &FencedError{Name: r.cfg.Name, Owner: cur.Owner, Err: r.lastErr}
		}
	}
	owner := newOwner()
	r.owners[owner] = true
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.TransactionalID(r.txnID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		// A batch the broker cannot take fails instead of waiting
		// for ever inside its transaction.
		kgo.RecordDeliveryTimeout(r.cfg.TransactionTimeout),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer cl.Close()
	// InitProducerID: bumps the transactional id's epoch, so the
	// broker refuses the previous holder's transactions from now on,
	// and aborts the one it left open.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return &retry{fmt.Errorf("outbox: initializing the transactional id %s: %w", r.txnID, err)}
	}
	cv, found, err := readCursor(ctx, r.cfg, false)
	if err != nil {
		return &retry{err}
	}
	if found {
		r.before[cv.Owner] = true
	}
	cur := cv.Cursor
	// The claim: the cursor as found, under this session's name. A
	// relay whose session failed checks it before it starts another.
	crec, err := r.commit(ctx, cl, owner, cur, nil)
	if err != nil {
		return err
	}
	conf, err := newConfirmer(r.cfg, crec.Partition, crec.Offset)
	if err != nil {
		return err
	}
	defer conf.close()
	if err := r.confirm(ctx, conf, crec, cur, 0); err != nil {
		return err
	}
	r.setCursor(cur)
	c.upTo(cur)
	r.cfg.Logger.Info("outbox: relaying", "name", r.cfg.Name, "table", r.cfg.Table, "cursor", cur.String(), "session", owner)

	const minPause, maxPause = 100 * time.Millisecond, 5 * time.Second
	pause := minPause
	for {
		rows, err := r.readBatch(ctx, cur)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !pgsql.Transient(err) {
				return err
			}
			r.cfg.Logger.Warn("outbox: reading the outbox table", "table", r.cfg.Table, "err", err, "pause", pause)
			if !sleep(ctx, pause) {
				return nil
			}
			pause = min(2*pause, maxPause)
			continue
		}
		pause = minPause
		if len(rows) == 0 {
			if !sleep(ctx, r.cfg.PollInterval) {
				return nil
			}
			continue
		}
		next := rows[len(rows)-1].cursor
		crec, err := r.commit(ctx, cl, owner, next, rows)
		if err == nil {
			err = r.confirm(ctx, conf, crec, next, len(rows))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cur = next
		r.batches.Add(1)
		r.rows.Add(int64(len(rows)))
		r.setCursor(cur)
		c.upTo(cur)
	}
}

// confirm confirms that the transaction of cursor record crec (cursor
// next) committed; see confirmer.
func (r *Relay) confirm(ctx context.Context, conf *confirmer, crec *kgo.Record, next Cursor, rows int) error {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.TransactionTimeout+endTimeout)
	defer cancel()
	err := conf.confirm(cctx, crec)
	if errors.Is(err, errNotCommitted) {
		r.unconfirmed.Add(1)
		r.cfg.Logger.Error("outbox: a transaction franz-go reported committed did not commit; starting over from the cursor topic",
			"name", r.cfg.Name, "cursor", next.String(), "rows", rows, "record", fmt.Sprintf("%s[%d]@%d", crec.Topic, crec.Partition, crec.Offset))
	}
	if err != nil {
		return &retry{fmt.Errorf("outbox: the transaction up to %v: %w", next, err)}
	}
	return nil
}

func (r *Relay) setCursor(c Cursor) {
	r.mu.Lock()
	r.cursor = c
	r.mu.Unlock()
}

// row is an outbox row read for a batch.
type row struct {
	cursor Cursor
	rec    *kgo.Record
}

// readBatch reads the rows after cur, below the horizon, in (xid, seq)
// order: at most MaxBatchRows. A row that cannot become a record is a
// *RowError.
func (r *Relay) readBatch(ctx context.Context, cur Cursor) ([]row, error) {
	r.polls.Add(1)
	rs, err := r.pool.Query(ctx, r.read, cur.Xid, cur.Seq, r.cfg.MaxBatchRows)
	if err != nil {
		return nil, fmt.Errorf("outbox: reading %s after %v: %w", r.cfg.Table, cur, err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var (
			c          Cursor
			topic      *string
			key, value []byte
			hk         []string
			hv         [][]byte
			created    time.Time
		)
		if err := rs.Scan(&c.Xid, &c.Seq, &topic, &key, &value, &hk, &hv, &created); err != nil {
			return nil, fmt.Errorf("outbox: reading %s after %v: %w", r.cfg.Table, cur, err)
		}
		rec := &kgo.Record{Topic: r.cfg.Topic, Key: key, Value: value, Timestamp: created}
		if topic != nil {
			rec.Topic = *topic
		}
		if rec.Topic == "" {
			return nil, &RowError{Table: r.cfg.Table, Xid: c.Xid, Seq: c.Seq,
				Err: errors.New("no topic: the row's topic is NULL and the relay has no default topic (Config.Topic, runner: --topic)")}
		}
		if len(hk) != len(hv) {
			return nil, &RowError{Table: r.cfg.Table, Xid: c.Xid, Seq: c.Seq, Topic: rec.Topic,
				Err: fmt.Errorf("%d header keys but %d header values", len(hk), len(hv))}
		}
		for i := range hk {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: hk[i], Value: hv[i]})
		}
		rows = append(rows, row{cursor: c, rec: rec})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("outbox: reading %s after %v: %w", r.cfg.Table, cur, err)
	}
	return rows, nil
}

// endTimeout bounds an EndTxn, which is sent with a context that Run's
// cancellation does not end: a commit under way is waited for.
const endTimeout = 30 * time.Second

// commit produces rows and the cursor next in one Kafka transaction and
// commits it, and returns the cursor record (its partition and offset
// set). Rows empty is a session's claim. The commit is as franz-go
// reports it: the caller confirms it.
func (r *Relay) commit(ctx context.Context, cl *kgo.Client, owner string, next Cursor, rows []row) (*kgo.Record, error) {
	var from Cursor
	if len(rows) > 0 {
		from = r.Stats().Cursor
	}
	info := batchInfo{Owner: owner, From: from, Next: next, Rows: len(rows)}
	if r.hook != nil {
		r.hook(stageRead, info)
	}
	if err := cl.BeginTransaction(); err != nil {
		return nil, &retry{fmt.Errorf("outbox: beginning a transaction: %w", err)}
	}
	var (
		mu     sync.Mutex
		failed error
		bad    *row
	)
	fail := func(rw *row, err error) {
		mu.Lock()
		if failed == nil {
			failed, bad = err, rw
		}
		mu.Unlock()
	}
	for i := range rows {
		rw := &rows[i]
		cl.Produce(ctx, rw.rec, func(_ *kgo.Record, err error) {
			if err != nil {
				fail(rw, err)
			}
		})
	}
	crec := &kgo.Record{Topic: r.cfg.CursorTopic, Key: []byte(r.cfg.Name), Value: cursorValue{Cursor: next, Owner: owner}.encode()}
	cl.Produce(ctx, crec, func(_ *kgo.Record, err error) {
		if err != nil {
			fail(nil, err)
		}
	})
	flushErr := cl.Flush(ctx)
	mu.Lock()
	produceErr, badRow := failed, bad
	mu.Unlock()
	if produceErr != nil || flushErr != nil {
		// franz-go commits whatever it delivered if asked to: never ask.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
		abortErr := cl.EndTransaction(actx, kgo.TryAbort)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if badRow != nil && rowFatal(produceErr) {
			return nil, &RowError{Table: r.cfg.Table, Xid: badRow.cursor.Xid, Seq: badRow.cursor.Seq, Topic: badRow.rec.Topic, Err: produceErr}
		}
		return nil, &retry{fmt.Errorf("outbox: producing the batch after %v (aborted: %v): %w", from, abortErr, errors.Join(produceErr, flushErr))}
	}
	if r.hook != nil {
		r.hook(stageProduced, info)
		r.hook(stageCommit, info)
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	err := cl.EndTransaction(ectx, kgo.TryCommit)
	cancel()
	if err != nil {
		return nil, &retry{fmt.Errorf("outbox: committing the batch up to %v (outcome unknown: the cursor topic knows): %w", next, err)}
	}
	if r.hook != nil {
		r.hook(stageDone, info)
	}
	if len(rows) > 0 && r.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		r.cfg.Logger.Debug("outbox: batch committed", "name", r.cfg.Name, "rows", len(rows), "cursor", next.String())
	}
	return crec, nil
}
