package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/outbox"
	"github.com/sluicehq/sluice/txn/pgserver"
)

// The outbox demo's pipeline: orders and their events, and changes of
// customers, written to Postgres each in one transaction with its outbox
// rows; relayed to the topics order-events and customers; deduplicated
// by the dedup app into orders; joined with their customers by the
// enrich app into orders-enriched; and written by the Postgres sink into
// the table orders_enriched of the same database.
const (
	outboxDemoOrders  = 20_000 // orders committed when --records is not given
	outboxDemoKills   = 3      // SIGKILLs of the relay, and as many of the sink
	outboxDemoWriters = 4      // concurrent writing transactions
	outboxRowHeader   = "demo-row"
	outboxDemoWait    = 2 * time.Minute // the longest the demo waits for one step of the pipeline
)

// errDemoRollback makes a planned transaction roll back after its writes.
var errDemoRollback = errors.New("runner: demo outbox: planned rollback")

// demoOutbox runs the outbox relay and the Postgres sink end to end, with
// the dedup and the enrich apps between them (see the usage of runner
// demo): a throwaway Postgres, an embedded broker, the relay, nworkers
// workers of each app and the sink as child processes; the relay and the
// sink SIGKILLed and restarted outboxDemoKills times each, a worker of
// each app once; then the sink's table checked in SQL against the orders
// and customers tables and the plan, and the topics between them read
// with read_committed.
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
		amount_cents bigint NOT NULL);
	CREATE TABLE customers (
		customer_id text    PRIMARY KEY,
		name        text    NOT NULL,
		tier        text    NOT NULL,
		version     integer NOT NULL)`); err != nil {
		return fmt.Errorf("runner: demo outbox: create tables orders and customers: %w", err)
	}
	if err := (outbox.Table{}).Create(ctx, pool); err != nil {
		return err
	}
	p.say("Postgres in %s: database demo, tables orders, customers and %s", pg.Dir, outbox.DefaultTable)

	compact := "compact"
	rig, err := startDemoWith(ctx, p, []string{"order-events", "orders", "customers", "orders-enriched"},
		map[string]map[string]*string{"customers": {"cleanup.policy": &compact}}, 8, 0, nil)
	if err != nil {
		return err
	}
	defer rig.close()
	addr := rig.brokers[0]
	dedup, err := rig.addWorkers("d", nworkers, "dedup", "--input", "order-events", "--output", "orders", "--id-field", "event_id")
	if err != nil {
		return err
	}
	enrich, err := rig.addWorkers("e", nworkers, "enrich", "--orders", "orders", "--customers", "customers", "--output", "orders-enriched")
	if err != nil {
		return err
	}
	relay := &demoChild{name: "relay", bin: self, progress: p, args: []string{"relay", "postgres", "--brokers", addr,
		"--postgres", conn, "--name", "orders", "--poll-interval", "10ms", "--max-batch", "500"}}
	sink := &demoChild{name: "sink", bin: self, progress: p, args: []string{"sink", "postgres", "enrich", "--brokers", addr,
		"--postgres", conn, "--instance", "s1", "--session-timeout", "6s", "--max-batch", "500"}}
	for _, c := range []*demoChild{relay, sink} {
		if err := c.start(); err != nil {
			return err
		}
		defer c.stop()
	}
	p.say("started: runner %s", strings.Join(relay.args[:2], " "))
	p.say("started: runner %s (orders-enriched into the table orders_enriched)", strings.Join(sink.args[:3], " "))
	failed := func() error { return errors.Join(relay.failed(), sink.failed(), dedup.failed(), enrich.failed()) }
	watch, err := newCustomerWatch(rig.brokers)
	if err != nil {
		return err
	}
	defer watch.close()

	// A task does not merge its partitions' records by timestamp
	// (docs/joins.md): an order fetched in the same poll as a change of
	// its customer can be joined before it. So every phase starts once
	// the enrich workers have loaded every customer change committed
	// before it, the first the customers' first values: an order joins
	// that value of its customer, or a later one.
	p.say("writing %d customers' first values in %d transactions", plan.firsts, len(plan.setup))
	if err := writeOutbox(ctx, pool, p, plan.setup); err != nil {
		return err
	}
	if err := watch.loaded(ctx, p, plan, 0, failed); err != nil {
		return err
	}
	start := time.Now()
	var sinkRows int64
	for i, txns := range plan.phases {
		p.say("phase %d of %d: writing %d transactions: orders with their outbox rows, customer changes with theirs", i+1, len(plan.phases), len(txns))
		if err := writeOutbox(ctx, pool, p, txns); err != nil {
			return err
		}
		if i == len(plan.phases)-1 {
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
		switch i {
		case 1:
			err = dedup.crashOne(ctx)
		case 2:
			err = enrich.crashOne(ctx)
		}
		if err != nil {
			return err
		}
		if err := watch.loaded(ctx, p, plan, i+1, failed); err != nil {
			return err
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

	vctx, cancel := context.WithTimeout(ctx, outboxDemoWait)
	defer cancel()
	p.say("reading order-events, customers, orders and orders-enriched with read_committed")
	kc, err := checkOutboxKafka(vctx, rig.brokers, plan)
	if err != nil {
		return err
	}
	p.say("checking the sink's table orders_enriched against the orders and customers tables and the plan in SQL")
	sq, err := checkOutboxSQL(vctx, pool, plan)
	if err != nil {
		return err
	}
	p.finish()

	stages := []stageCount{kc.events, kc.customers, kc.unique, kc.enriched}
	var dups, missing, rolled, unexpected int64
	for _, s := range stages {
		dups, missing, rolled, unexpected = dups+s.dups, missing+s.missing, rolled+s.rolledBack, unexpected+s.wrong
	}
	missing += sq.missing
	rolled += sq.rolledBack
	unexpected += sq.unexpected + sq.wrong + sq.customerWrong + sq.customersDiffer
	totals := "equal"
	if sq.sinkCount != sq.srcCount || sq.sinkSum != sq.srcSum || sq.srcCount != plan.orders || sq.srcSum != plan.amount || sq.totalsDiffer > 0 {
		totals = "DIFFERENT"
	}
	stage := func(s stageCount) string {
		return fmt.Sprintf("%d duplicates, %d missing, %d rolled back, %d not as written", s.dups, s.missing, s.rolledBack, s.wrong)
	}
	fmt.Fprintf(stdout, `demo report (outbox, %d dedup and %d enrich workers; relay, sink and two workers SIGKILLed and restarted)
  orders in:        %d committed in %d transactions (%d outbox rows, %d repeat an order's event)
  customers in:     %d changes committed in %d transactions: %d first values, %d updates, %d deleted, %d created later
  rolled back:      %d transactions: %d orders, %d customer changes (must never appear)
  relayed:          %d records in order-events (%s)
  relayed:          %d records in customers (%s)
  deduplicated:     %d records in orders (%s)
  enriched:         %d records in orders-enriched (%s)
  sink table:       %d rows in orders_enriched, %d missing, %d rolled back, %d not in orders, %d not as in orders
  joined customers: %d wrong; %d joined a newer value than the one loaded before their phase, %d a deleted customer (null)
  customers table:  %d rows, %d not as planned
  totals:           %s: orders_enriched %d orders, %d cents; orders table %d, %d cents; planned %d, %d cents; %d of %d customers' sums differ
  duplicates:       %d
  missing:          %d
  rolled back seen: %d
  unexpected:       %d (rows never written, records or rows not as written, wrong customers)
  kills:            %d relay, %d sink, 1 dedup worker, 1 enrich worker (SIGKILL, each restarted)
  throughput:       %.0f orders/s end to end, Postgres to Postgres (%.1fs)
`, nworkers, nworkers, plan.orders, plan.txns-plan.rolledBackTxns-plan.customerTxns, len(plan.eventRows), plan.repeats,
		len(plan.customerRows), plan.customerTxns, plan.firsts, plan.updates, plan.deletes, plan.creates,
		plan.rolledBackTxns, len(plan.rolledBack), plan.rolledBackChanges,
		kc.events.records, stage(kc.events), kc.customers.records, stage(kc.customers),
		kc.unique.records, stage(kc.unique), kc.enriched.records, stage(kc.enriched),
		sq.sinkCount, sq.missing, sq.rolledBack, sq.unexpected, sq.wrong,
		sq.customerWrong, sq.customerNewer, sq.customerNull,
		sq.customersTable, sq.customersDiffer,
		totals, sq.sinkCount, sq.sinkSum, sq.srcCount, sq.srcSum, plan.orders, plan.amount, sq.totalsDiffer, sq.customers,
		dups, missing, rolled, unexpected, relay.kills, sink.kills,
		float64(plan.orders)/elapsed.Seconds(), elapsed.Seconds())
	if dups+missing+rolled+unexpected > 0 || totals != "equal" {
		return errors.New("runner: demo outbox: the orders did not arrive exactly once, each with its customer")
	}
	fmt.Fprintln(stdout, "demo: clean: every committed order exactly once in the sink's table, with its customer, no rolled-back one, totals equal")
	return nil
}

// writeOutbox runs txns, outboxDemoWriters at a time: each writes its
// orders into the orders table and their events into the outbox (topic
// order-events, key the customer), or its customer changes into the
// customers table and the outbox (topic customers, key the customer, a
// null value for a delete), in ONE database transaction, which commits
// or, as planned, rolls back.
func writeOutbox(ctx context.Context, pool *pgxpool.Pool, p *demoProgress, txns []demoTxn) error {
	events := outbox.NewWriter(outbox.Table{}, "order-events", serde.String, serde.JSON[orderEvent]())
	next := make(chan demoTxn)
	errs := make(chan error, outboxDemoWriters)
	var wg sync.WaitGroup
	for range outboxDemoWriters {
		wg.Go(func() {
			for tx := range next {
				err := pgx.BeginFunc(ctx, pool, func(dbtx pgx.Tx) error { return writeDemoTxn(ctx, dbtx, events, tx) })
				switch {
				case tx.rollback && errors.Is(err, errDemoRollback):
				case err != nil:
					errs <- fmt.Errorf("runner: demo outbox: writing transaction of rows %d..: %w", tx.rows[0], err)
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

// writeDemoTxn writes tx inside dbtx, and returns errDemoRollback when
// tx is planned to roll back.
func writeDemoTxn(ctx context.Context, dbtx pgx.Tx, events *outbox.Writer[string, orderEvent], tx demoTxn) error {
	header := func(i int) kgo.RecordHeader {
		return kgo.RecordHeader{Key: outboxRowHeader, Value: strconv.AppendInt(nil, tx.rows[i], 10)}
	}
	for _, o := range tx.orders {
		if _, err := dbtx.Exec(ctx, `INSERT INTO orders (order_id, customer_id, amount_cents) VALUES ($1, $2, $3)`,
			o.OrderID, o.CustomerID, o.AmountCents); err != nil {
			return err
		}
	}
	for i, e := range tx.events {
		if err := events.Write(ctx, dbtx, e.CustomerID, e, header(i)); err != nil {
			return err
		}
	}
	msgs := make([]outbox.Message, 0, len(tx.changes))
	for i, c := range tx.changes {
		var err error
		if v := c.value; v == nil {
			_, err = dbtx.Exec(ctx, `DELETE FROM customers WHERE customer_id = $1`, c.id)
		} else {
			_, err = dbtx.Exec(ctx, `INSERT INTO customers (customer_id, name, tier, version) VALUES ($1, $2, $3, $4)
				ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, tier = EXCLUDED.tier, version = EXCLUDED.version`,
				v.CustomerID, v.Name, v.Tier, v.Version)
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, outbox.Message{Topic: "customers", Key: []byte(c.id), Value: c.encode(), Headers: []kgo.RecordHeader{header(len(tx.events) + i)}})
	}
	if err := (outbox.Table{}).Write(ctx, dbtx, msgs...); err != nil {
		return err
	}
	if tx.rollback {
		return errDemoRollback
	}
	return nil
}

// customerWatch follows the topic customers with read_committed, as the
// relay fills it, to tell when the enrich workers have loaded the
// customer changes committed so far.
type customerWatch struct {
	cl   *kgo.Client
	adm  *kadm.Client
	seen map[int64]bool  // outbox rows read
	past map[int32]int64 // per partition, the offset after the last record read
}

func newCustomerWatch(brokers []string) (*customerWatch, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("customers"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	return &customerWatch{cl: cl, adm: kadm.NewClient(cl), seen: map[int64]bool{}, past: map[int32]int64{}}, nil
}

func (w *customerWatch) close() { w.cl.Close() }

// loaded waits until the enrich workers have loaded every customer change
// committed before phase (the setup's, and those of the phases before):
// until the topic customers holds each of their rows, read with
// read_committed, and the enrich group's committed offsets are past the
// last of them in every partition; so each task has processed them and
// committed its table with them. It fails when a child process exited
// (failed) or after outboxDemoWait, saying what it waited for.
func (w *customerWatch) loaded(ctx context.Context, p *demoProgress, plan *outboxPlan, phase int, failed func() error) error {
	want := map[int64]bool{}
	for _, tx := range slices.Concat(plan.setup, slices.Concat(plan.phases[:phase]...)) {
		if !tx.rollback {
			for _, row := range tx.rows[len(tx.events):] {
				want[row] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, outboxDemoWait)
	defer cancel()
	missing := func() int {
		n := 0
		for row := range want {
			if !w.seen[row] {
				n++
			}
		}
		return n
	}
	for missing() > 0 {
		if err := failed(); err != nil {
			return err
		}
		pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := w.cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			return fmt.Errorf("runner: demo outbox: waited %v for the relay to commit the customers' rows: %d of %d missing in the topic customers",
				outboxDemoWait, missing(), len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if row, ok := rowNum(r); ok {
				w.seen[row] = true
			}
			w.past[r.Partition] = max(w.past[r.Partition], r.Offset+1)
		})
	}
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	var behind []string
	for {
		committed, err := w.adm.FetchOffsets(ctx, "enrich")
		if err == nil {
			behind = behind[:0]
			for part, past := range w.past {
				if c, ok := committed.Lookup("customers", part); !ok || c.At < past {
					behind = append(behind, fmt.Sprintf("customers/%d at %d of %d", part, c.At, past))
				}
			}
			if len(behind) == 0 {
				p.say("the enrich workers have loaded the %d customer changes committed so far", len(want))
				return nil
			}
		}
		if ferr := failed(); ferr != nil {
			return ferr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runner: demo outbox: waited %v for the enrich workers to load the customers: %s (%v)",
				outboxDemoWait, strings.Join(behind, ", "), err)
		case <-poll.C:
		}
	}
}

// waitRows waits until done holds for the number of rows in the sink's
// table orders_enriched (0 while the sink has not created it), and
// returns that number. It fails when a child process exited (failed), or
// after outboxDemoWait, saying what it waited for.
func waitRows(ctx context.Context, pool *pgxpool.Pool, failed func() error, what string, done func(int64) bool) (int64, error) {
	deadline := time.NewTimer(outboxDemoWait)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		var exists bool
		var c int64
		err := pool.QueryRow(ctx, `SELECT to_regclass('orders_enriched') IS NOT NULL`).Scan(&exists)
		if err == nil && exists {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM orders_enriched`).Scan(&c)
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
			return c, fmt.Errorf("runner: demo outbox: waited %v for %s; the table orders_enriched holds %d rows", outboxDemoWait, what, c)
		case <-poll.C:
		}
	}
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
