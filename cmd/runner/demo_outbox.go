package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/outbox"
	"github.com/sluicehq/sluice/txn/pgserver"
)

// The outbox demo's pipeline: orders and their events written to Postgres
// in one transaction each, relayed to the topic "events", deduplicated by
// the dedup app into "events-unique", and written by the Postgres sink
// into the table "events" of the same database.
const (
	outboxDemoOrders  = 20_000 // orders committed when --records is not given
	outboxDemoKills   = 3      // SIGKILLs of the relay, and as many of the sink
	outboxDemoWriters = 4      // concurrent writing transactions
	outboxRowHeader   = "demo-row"
)

// orderEvent is the value of an order's event: the dedup app's event_id
// is the order's id, and the rest is the order as the orders table holds
// it (the enrich app's order format).
type orderEvent struct {
	EventID     string `json:"event_id"`
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
}

// demoTxn is one database transaction of the generator: its orders, the
// outbox rows that announce them (rows[i] carries event events[i]; an
// order's event can be written twice, or announced again by a later
// transaction), and whether it rolls back.
type demoTxn struct {
	orders   []orderEvent
	events   []orderEvent
	rows     []int64 // the rows' numbers, in the outboxRowHeader header
	rollback bool
}

// outboxPlan is every transaction the generator runs, decided before it
// starts so that the check knows what must come out.
type outboxPlan struct {
	txns []demoTxn
	// committedRows and rolledBackRows are the numbers of the outbox rows
	// of committed and of rolled-back transactions; rolledBack the
	// numbers of the orders of rolled-back transactions.
	committedRows, rolledBackRows, rolledBack map[int64]bool
	orders, repeats                           int64 // committed orders, rows that repeat an event
	rolledBackTxns                            int64
}

// planOutbox plans transactions until n orders are committed: each
// writes 1 to 4 orders with an event each; every 9th rolls back after
// writing; every 5th committed one writes its first event twice, and
// every 7th announces again the first order of the committed transaction
// three before it.
func planOutbox(n int64) *outboxPlan {
	p := &outboxPlan{committedRows: map[int64]bool{}, rolledBackRows: map[int64]bool{}, rolledBack: map[int64]bool{}}
	var order, row int64
	for t := int64(0); p.orders < n; t++ {
		tx := demoTxn{rollback: t%9 == 8}
		size := 1 + t%4
		if !tx.rollback {
			size = min(size, n-p.orders)
		}
		for j := range size {
			e := orderEvent{OrderID: "o" + strconv.FormatInt(order, 10), CustomerID: fmt.Sprintf("c%d", (t+j)%50), AmountCents: (t*31+j*17)%10_000 + 1}
			e.EventID = e.OrderID
			tx.orders = append(tx.orders, e)
			tx.events = append(tx.events, e)
			if tx.rollback {
				p.rolledBack[order] = true
			}
			order++
		}
		if !tx.rollback {
			if t%5 == 0 {
				tx.events = append(tx.events, tx.orders[0])
				p.repeats++
			}
			if t%7 == 3 && !p.txns[t-3].rollback {
				tx.events = append(tx.events, p.txns[t-3].orders[0])
				p.repeats++
			}
			p.orders += size
		} else {
			p.rolledBackTxns++
		}
		for range tx.events {
			tx.rows = append(tx.rows, row)
			if tx.rollback {
				p.rolledBackRows[row] = true
			} else {
				p.committedRows[row] = true
			}
			row++
		}
		p.txns = append(p.txns, tx)
	}
	return p
}

// errDemoRollback makes a planned transaction roll back after its writes.
var errDemoRollback = errors.New("runner: demo outbox: planned rollback")

// demoOutbox runs the outbox relay and the Postgres sink end to end (see
// the usage of runner demo): a throwaway Postgres, an embedded broker,
// the relay, nworkers dedup workers and the sink as child processes; the
// relay and the sink SIGKILLed and restarted outboxDemoKills times each,
// a worker once; then the sink's table checked in SQL against the orders
// table, and the topics between them read with read_committed.
func demoOutbox(ctx context.Context, stdout, stderr io.Writer, n int64, nworkers int) error {
	p := newDemoProgress(stderr, "outbox", "orders", n)
	defer p.finish()
	plan := planOutbox(n)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("runner: demo: find own executable: %w", err)
	}
	pg, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		return err
	}
	defer pg.Stop()
	if err := pg.CreateDB(ctx, "demo"); err != nil {
		return err
	}
	conn := pg.ConnString("demo")
	pcfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return err
	}
	pcfg.MaxConns = outboxDemoWriters + 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE orders (
		order_id     text   PRIMARY KEY,
		customer_id  text   NOT NULL,
		amount_cents bigint NOT NULL)`); err != nil {
		return fmt.Errorf("runner: demo outbox: create table orders: %w", err)
	}
	if err := (outbox.Table{}).Create(ctx, pool); err != nil {
		return err
	}
	p.say("Postgres in %s: database demo, tables orders and %s", pg.Dir, outbox.DefaultTable)

	rig, err := startDemo(ctx, p, []string{"events", "events-unique"}, 8, nworkers, "dedup")
	if err != nil {
		return err
	}
	defer rig.close()
	addr := rig.brokers[0]
	relay := &demoChild{name: "relay", bin: self, progress: p, args: []string{"relay", "postgres", "--brokers", addr,
		"--postgres", conn, "--name", "orders", "--poll-interval", "10ms", "--max-batch", "500"}}
	sink := &demoChild{name: "sink", bin: self, progress: p, args: []string{"sink", "postgres", "dedup", "--brokers", addr,
		"--postgres", conn, "--instance", "s1", "--session-timeout", "6s", "--max-batch", "500"}}
	for _, c := range []*demoChild{relay, sink} {
		if err := c.start(); err != nil {
			return err
		}
		defer c.stop()
	}
	p.say("started: runner %s", strings.Join(relay.args[:2], " "))
	p.say("started: runner %s (into table events)", strings.Join(sink.args[:3], " "))
	failed := func() error { return errors.Join(relay.failed(), sink.failed(), rig.ws.failed()) }

	start := time.Now()
	var sinkRows int64
	phases := outboxDemoKills + 1
	for i := range phases {
		from, to := len(plan.txns)*i/phases, len(plan.txns)*(i+1)/phases
		p.say("writing transactions [%d, %d) of %d: orders and their outbox rows", from, to, len(plan.txns))
		if err := writeOutbox(ctx, pool, p, plan.txns[from:to]); err != nil {
			return err
		}
		if i == phases-1 {
			break
		}
		if err := relay.crash(); err != nil {
			return err
		}
		// The sink is killed once it has written something since it last
		// was: while it works, not before it started.
		if sinkRows, err = waitRows(ctx, pool, failed, fmt.Sprintf("the sink to write more than %d rows", sinkRows),
			func(c int64) bool { return c > sinkRows }); err != nil {
			return err
		}
		if err := sink.crash(); err != nil {
			return err
		}
		if i == 1 {
			if err := rig.ws.crashOne(ctx); err != nil {
				return err
			}
		}
	}
	if _, err := waitRows(ctx, pool, failed, fmt.Sprintf("all %d orders in the sink's table", plan.orders),
		func(c int64) bool { return c >= plan.orders }); err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := failed(); err != nil {
		return err
	}

	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p.say("reading events and events-unique with read_committed")
	rows, rowsWrong, err := readSeqs(vctx, rig.brokers, "events", int64(len(plan.committedRows)), func(r *kgo.Record) (int64, bool) {
		for _, h := range r.Headers {
			if h.Key == outboxRowHeader {
				n, err := strconv.ParseInt(string(h.Value), 10, 64)
				return n, err == nil
			}
		}
		return -1, false
	})
	if err != nil {
		return err
	}
	unique, uniqueWrong, err := readSeqs(vctx, rig.brokers, "events-unique", plan.orders, func(r *kgo.Record) (int64, bool) {
		e, err := serde.JSON[orderEvent]().Decode(r.Value)
		if err != nil {
			return -1, false
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(e.OrderID, "o"), 10, 64)
		return n, err == nil && e.EventID == e.OrderID
	})
	if err != nil {
		return err
	}
	p.say("checking the sink's table events against the orders table in SQL")
	sq, err := checkOutboxSQL(vctx, pool, plan)
	if err != nil {
		return err
	}
	p.finish()

	var relayDup, relayMissing, relayRolled int64
	for row := range plan.committedRows {
		switch c := rows[row]; {
		case c == 0:
			relayMissing++
		case c > 1:
			relayDup += int64(c - 1)
		}
	}
	for row, c := range rows {
		if plan.rolledBackRows[row] {
			relayRolled += int64(c)
		} else if !plan.committedRows[row] && row >= 0 { // readSeqs counted those without a number
			rowsWrong += int64(c)
		}
	}
	var dedupDup, dedupMissing, dedupRolled int64
	for order := range plan.orders + int64(len(plan.rolledBack)) {
		c := unique[order]
		switch {
		case plan.rolledBack[order]:
			dedupRolled += int64(c)
		case c == 0:
			dedupMissing++
		case c > 1:
			dedupDup += int64(c - 1)
		}
	}
	for order, c := range unique {
		if order >= plan.orders+int64(len(plan.rolledBack)) { // readSeqs counted those without a number
			uniqueWrong += int64(c)
		}
	}
	dups, missing, rolled := relayDup+dedupDup, relayMissing+dedupMissing+sq.missing, relayRolled+dedupRolled+sq.rolledBack
	unexpected := rowsWrong + uniqueWrong + sq.unexpected + sq.wrong
	totals := "equal"
	if sq.sinkCount != sq.srcCount || sq.sinkSum != sq.srcSum || sq.srcCount != plan.orders {
		totals = "DIFFERENT"
	}
	fmt.Fprintf(stdout, `demo report (outbox, %d dedup workers; relay, sink and a worker SIGKILLed and restarted)
  orders in:        %d committed in %d transactions (%d outbox rows, %d repeat an order's event)
  rolled back:      %d transactions, %d orders (must never appear)
  relayed:          %d records in events (%d duplicates, %d missing, %d rolled back)
  deduplicated:     %d records in events-unique (%d duplicates, %d missing, %d rolled back)
  sink table:       %d rows in events, %d missing, %d rolled back, %d not in orders, %d not as in orders
  totals:           %s: events %d orders, %d cents; orders table %d orders, %d cents
  duplicates:       %d
  missing:          %d
  rolled back seen: %d
  unexpected:       %d (rows never written, records not as written)
  kills:            %d relay, %d sink, 1 worker (SIGKILL, each restarted)
  throughput:       %.0f orders/s end to end, Postgres to Postgres (%.1fs)
`, nworkers, plan.orders, int64(len(plan.txns))-plan.rolledBackTxns, len(plan.committedRows), plan.repeats,
		plan.rolledBackTxns, len(plan.rolledBack),
		countAll(rows), relayDup, relayMissing, relayRolled,
		countAll(unique), dedupDup, dedupMissing, dedupRolled,
		sq.sinkCount, sq.missing, sq.rolledBack, sq.unexpected, sq.wrong,
		totals, sq.sinkCount, sq.sinkSum, sq.srcCount, sq.srcSum,
		dups, missing, rolled, unexpected, relay.kills, sink.kills,
		float64(plan.orders)/elapsed.Seconds(), elapsed.Seconds())
	if dups+missing+rolled+unexpected > 0 || totals != "equal" {
		return errors.New("runner: demo outbox: the orders did not arrive exactly once")
	}
	fmt.Fprintln(stdout, "demo: clean: every committed order exactly once in the sink's table, no rolled-back one, totals equal")
	return nil
}

// writeOutbox runs txns, outboxDemoWriters at a time: each writes its
// orders into the orders table and their events into the outbox in ONE
// database transaction, which commits or, as planned, rolls back.
func writeOutbox(ctx context.Context, pool *pgxpool.Pool, p *demoProgress, txns []demoTxn) error {
	w := outbox.NewWriter(outbox.Table{}, "events", serde.String, serde.JSON[orderEvent]())
	next := make(chan demoTxn)
	errs := make(chan error, outboxDemoWriters)
	var wg sync.WaitGroup
	for range outboxDemoWriters {
		wg.Go(func() {
			for tx := range next {
				err := pgx.BeginFunc(ctx, pool, func(dbtx pgx.Tx) error {
					for _, o := range tx.orders {
						if _, err := dbtx.Exec(ctx, `INSERT INTO orders (order_id, customer_id, amount_cents) VALUES ($1, $2, $3)`,
							o.OrderID, o.CustomerID, o.AmountCents); err != nil {
							return err
						}
					}
					for i, e := range tx.events {
						h := kgo.RecordHeader{Key: outboxRowHeader, Value: strconv.AppendInt(nil, tx.rows[i], 10)}
						if err := w.Write(ctx, dbtx, e.CustomerID, e, h); err != nil {
							return err
						}
					}
					if tx.rollback {
						return errDemoRollback
					}
					return nil
				})
				switch {
				case tx.rollback && errors.Is(err, errDemoRollback):
				case err != nil:
					errs <- fmt.Errorf("runner: demo outbox: writing orders %s..: %w", tx.orders[0].OrderID, err)
					for range next {
					}
					return
				default:
					for range tx.orders {
						p.acked()
					}
				}
			}
		})
	}
	for _, tx := range txns {
		next <- tx
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// waitRows waits until done holds for the number of rows in the sink's
// table events (0 while the sink has not created it), and returns that
// number. It fails when a child process exited (failed), or after two
// minutes, saying what it waited for.
func waitRows(ctx context.Context, pool *pgxpool.Pool, failed func() error, what string, done func(int64) bool) (int64, error) {
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		var exists bool
		var c int64
		err := pool.QueryRow(ctx, `SELECT to_regclass('events') IS NOT NULL`).Scan(&exists)
		if err == nil && exists {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&c)
		}
		if err != nil {
			return 0, fmt.Errorf("runner: demo outbox: counting the sink's rows: %w", err)
		}
		if done(c) {
			return c, nil
		}
		if err := failed(); err != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-deadline.C:
			return c, fmt.Errorf("runner: demo outbox: waited 2m for %s; the table events holds %d rows", what, c)
		case <-poll.C:
		}
	}
}

// outboxSQL is what the sink's table holds compared with the orders
// table, both read in one snapshot.
type outboxSQL struct {
	srcCount, srcSum, sinkCount, sinkSum int64
	missing                              int64 // orders with no row in events
	unexpected                           int64 // rows in events with no order
	wrong                                int64 // rows whose customer or amount differ from the order's
	rolledBack                           int64 // rows of rolled-back orders
}

// checkOutboxSQL recomputes the count and sum of amounts of the orders
// table and of the sink's table events, and counts the differences.
func checkOutboxSQL(ctx context.Context, pool *pgxpool.Pool, plan *outboxPlan) (outboxSQL, error) {
	rolled := make([]string, 0, len(plan.rolledBack))
	for o := range plan.rolledBack {
		rolled = append(rolled, "o"+strconv.FormatInt(o, 10))
	}
	var s outboxSQL
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM orders),
			(SELECT coalesce(sum(amount_cents), 0)::bigint FROM orders),
			(SELECT count(*) FROM events),
			(SELECT coalesce(sum((event->>'amount_cents')::bigint), 0)::bigint FROM events),
			(SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = o.order_id)),
			(SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = e.event_id)),
			(SELECT count(*) FROM events e JOIN orders o ON o.order_id = e.event_id
				WHERE (e.event->>'amount_cents')::bigint IS DISTINCT FROM o.amount_cents
				   OR e.event->>'customer_id' IS DISTINCT FROM o.customer_id),
			(SELECT count(*) FROM events WHERE event_id = ANY($1))`, rolled).
			Scan(&s.srcCount, &s.srcSum, &s.sinkCount, &s.sinkSum, &s.missing, &s.unexpected, &s.wrong, &s.rolledBack)
	})
	if err != nil {
		return s, fmt.Errorf("runner: demo outbox: checking the tables: %w", err)
	}
	return s, nil
}

// demoChild is a child runner process that the demo SIGKILLs and
// restarts with the same arguments: the outbox relay or the Postgres
// sink. Its warnings and errors go to the demo's progress.
type demoChild struct {
	name     string
	bin      string
	args     []string
	progress *demoProgress

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan error // gets the process's exit once
	kills int
}

func (c *demoChild) start() error {
	cmd := exec.Command(c.bin, c.args...)
	cmd.Env = os.Environ()
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("runner: demo: start the %s: %w", c.name, err)
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || !strings.Contains(line, "level=") {
				c.progress.print(fmt.Sprintf("[%s] %s\n", c.name, line))
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		<-logged // Wait only after the pipe is drained, as os/exec requires.
		done <- cmd.Wait()
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cmd, c.done = cmd, done
	return nil
}

// crash SIGKILLs the process, waits for it to die and starts it again.
func (c *demoChild) crash() error {
	if err := c.failed(); err != nil {
		return err
	}
	c.progress.say("SIGKILL %s", c.name)
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd, c.done = nil, nil
	c.kills++
	c.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("runner: demo: kill the %s: %w", c.name, err)
	}
	<-done
	c.progress.crashed()
	if err := c.start(); err != nil {
		return err
	}
	c.progress.say("%s restarted", c.name)
	return nil
}

// failed returns an error if the process has exited on its own.
func (c *demoChild) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		return nil
	}
	select {
	case err := <-c.done:
		c.done = nil
		return fmt.Errorf("runner: demo: the %s exited: %v", c.name, err)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for the process, at most 30s before it
// kills it.
func (c *demoChild) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd, c.done = nil, nil
	c.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			c.progress.say("%s stopped: %v", c.name, err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
