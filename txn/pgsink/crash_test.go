package pgsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/pgsink"
	"github.com/sluicehq/sluice/txn/pgtest"
	"github.com/sluicehq/sluice/txn/txntest/child"
)

// The test binary doubles as a sink process when childEnv is set; the
// other PGSINK_* variables configure it.
const childEnv = "PGSINK_CHILD"

// Child modes: what the child does at its PGSINK_AT-th batch (or, for
// the mid-batch modes, the first after it that writes half its rows).
const (
	modeRun          = "run"           // nothing: a healthy instance
	modeHang         = "hang"          // writes half the batch, says "mid-batch", waits to be killed
	modeZombieMid    = "zombie-mid"    // writes half, says "mid-batch", waits for SIGUSR1, writes the rest
	modeZombieBefore = "zombie-before" // says "polled" before the transaction begins, waits for SIGUSR1
)

// runChild runs one sink instance until SIGTERM (exit 0) or a fatal
// error (exit 1).
func runChild() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	mode, instance := os.Getenv("PGSINK_MODE"), os.Getenv("PGSINK_INSTANCE")
	at, _ := strconv.Atoi(os.Getenv("PGSINK_AT"))
	session, _ := time.ParseDuration(os.Getenv("PGSINK_SESSION"))
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	spansJSON := func(spans []pgsink.Span) string { b, _ := json.Marshal(spans); return string(b) }

	writes, begins := 0, 0
	held := false // the mid-batch stop happened
	write := func(ctx context.Context, tx pgx.Tx, b *pgsink.Batch[string, Order]) error {
		writes++
		if writes < at || held || (mode != modeHang && mode != modeZombieMid) {
			return insertOrders(ctx, tx, b, instance, 0, len(b.Records))
		}
		// From the at-th batch on, until one gets this far: an attempt
		// that fails before (its partitions revoked by a rebalance, on a
		// loaded machine) is retried, and the retry stops instead.
		half := len(b.Records) / 2
		if err := insertOrders(ctx, tx, b, instance, 0, half); err != nil {
			return err
		}
		held = true
		say("mid-batch %s", spansJSON(b.Spans))
		select {
		case <-usr1:
		case <-ctx.Done():
			return ctx.Err()
		}
		say("resumed")
		return insertOrders(ctx, tx, b, instance, half, len(b.Records))
	}
	cfg := pgsink.Config{
		Brokers: strings.Split(os.Getenv("PGSINK_BROKERS"), ","), Group: "crash", Topics: []string{"orders"},
		Postgres: os.Getenv("PGSINK_CONN"), Instance: instance, SessionTimeout: session, MaxBatchRecords: 100,
		Logger:     slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ClientOpts: []kgo.Opt{kgo.HeartbeatInterval(200 * time.Millisecond)},
	}
	s, err := pgsink.New(cfg, serde.String, orderSerde, write)
	if err != nil {
		say("fatal: %v", err)
		return 1
	}
	if mode == modeZombieBefore {
		pgsink.SetBeforeBegin(s, func(spans []pgsink.Span) {
			begins++
			if begins == at {
				say("polled %s", spansJSON(spans))
				select {
				case <-usr1:
				case <-ctx.Done():
				}
				say("resumed")
			}
		})
	}
	if err := s.Run(ctx); err != nil {
		say("fatal: %v", err)
		return 1
	}
	say("stopped %+v", s.Stats())
	return 0
}

// sinkProc starts a sink process.
func (e *testEnv) sinkProc(t *testing.T, instance, mode string, at int, session time.Duration) *child.Process {
	t.Helper()
	cmd := child.Self(childEnv+"=1", "PGSINK_BROKERS="+strings.Join(e.brokers, ","), "PGSINK_CONN="+e.conn,
		"PGSINK_INSTANCE="+instance, "PGSINK_MODE="+mode, "PGSINK_AT="+strconv.Itoa(at), "PGSINK_SESSION="+session.String())
	return pgtest.StartChild(t, cmd, instance)
}

// The sink under SIGKILLs mid-batch and two zombies: every order lands
// exactly once, the sums equal a recomputation, and no zombie commits.
//
// First, 50 sink processes in a row are each SIGKILLed in the middle of
// a batch (half its rows written in the open transaction), after 0 to 2
// committed batches. Then two zombies, each with a healthy instance
// beside it in the group: one SIGSTOPped in the middle of a batch (its
// open transaction holds the offsets rows' locks until Postgres ends its
// idle session), one SIGSTOPped after polling and before its transaction
// begins (so only the epoch can stop it); each is resumed with SIGCONT
// once the other instance has written everything, and must commit
// nothing of the batch it held.
func TestExactlyOnceUnderCrashes(t *testing.T) {
	const (
		kills      = 50
		partitions = 4
		first      = 16_000 // orders before the zombies; a killed life commits at most 200
		second     = 2_000
	)
	e := newEnv(t)
	e.createTopic(t, "orders", partitions)
	for i := int64(0); i < first; i += 1000 {
		e.produce(t, orderRecords("orders", i, i+1000, partitions), true)
		if i%4000 == 0 { // aborted transactions between committed ones: never written
			e.produce(t, orderRecords("orders", 100_000+i, 100_000+i+50, partitions), false)
		}
	}
	const session = 2 * time.Second
	rng := rand.New(rand.NewPCG(15, 50))
	start := time.Now()
	for k := range kills {
		p := e.sinkProc(t, "c1", modeHang, 1+rng.IntN(3), session)
		pgtest.WaitLine(t, p, p.Started, time.Minute, "mid-batch")
		p.Kill()
		if !p.Killed() {
			t.Fatalf("kill %d: %s did not die of SIGKILL: %v\n%s", k, p.Name, p.Err(), p.Lines.Tail(20, nil))
		}
	}
	t.Logf("%d SIGKILLs mid-batch in %v; %d orders committed", kills, time.Since(start).Round(time.Millisecond), e.count(t, "SELECT count(*) FROM orders"))

	// Zombie 1: stopped mid-batch, holding the offsets rows' locks.
	a := e.sinkProc(t, "a", modeZombieMid, 2, session)
	b := e.sinkProc(t, "b", modeRun, 0, session)
	line := pgtest.WaitLine(t, a, a.Started, time.Minute, "mid-batch")
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var held []pgsink.Span
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "mid-batch ")), &held); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, time.Minute, "the healthy instance to write every order past the zombie", e.ordersCount(t, first))
	resumed := time.Now()
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitLine(t, a, resumed, time.Minute, "rejoining the group")
	e.checkNotCommitted(t, "a", held)

	// Zombie 2: stopped after its poll, before its transaction; only the
	// epoch fences it.
	a.Kill()
	b.Kill()
	e.produce(t, orderRecords("orders", first, first+second, partitions), true)
	a = e.sinkProc(t, "a", modeZombieBefore, 1, session)
	b = e.sinkProc(t, "b", modeRun, 0, session)
	line = pgtest.WaitLine(t, a, a.Started, time.Minute, "polled")
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	held = nil
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "polled ")), &held); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, time.Minute, "the healthy instance to write every order past the zombie", e.ordersCount(t, first+second))
	resumed = time.Now()
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitLine(t, a, resumed, time.Minute, "pgsink: fenced")
	for _, p := range []*child.Process{a, b} {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v\n%s", p.Name, err, p.Lines.Tail(20, nil))
		}
	}
	e.checkOrders(t, first+second)
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// checkNotCommitted fails t when writer committed any of spans, the
// batch it held as a zombie.
func (e *testEnv) checkNotCommitted(t *testing.T, writer string, spans []pgsink.Span) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatal("the zombie held no span")
	}
	for _, s := range spans {
		n := e.count(t, "SELECT count(*) FROM spans WHERE writer = $1 AND topic = $2 AND partition = $3 AND epoch = $4 AND from_offset = $5",
			writer, s.Topic, s.Partition, s.Epoch, s.From)
		if n != 0 {
			t.Errorf("the zombie %s committed its held batch %+v", writer, s)
		}
		n = e.count(t, "SELECT count(*) FROM orders WHERE writer = $1 AND topic = $2 AND partition = $3 AND record_offset >= $4 AND record_offset < $5",
			writer, s.Topic, s.Partition, s.From, s.Next)
		if n != 0 {
			t.Errorf("%d orders of the zombie %s's held batch %+v are in the table", n, writer, s)
		}
	}
}
