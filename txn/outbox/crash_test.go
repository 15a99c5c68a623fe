package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/txn/outbox"
	"github.com/sluicehq/sluice/txn/pgtest"
	"github.com/sluicehq/sluice/txn/txntest/child"
)

// The test binary doubles as a relay process when childEnv is set; the
// other OUTBOX_* variables configure it.
const childEnv = "OUTBOX_CHILD"

// What a child relay does at stage OUTBOX_STAGE of its OUTBOX_AT-th batch.
const (
	holdKill   = "kill"   // says "hang STAGE BATCH" and waits to be killed
	holdResume = "resume" // says "hang STAGE BATCH", waits for SIGUSR1, goes on
	holdPass   = "pass"   // says "at STAGE BATCH" and goes on
)

// Exit codes of a child relay.
const (
	exitFatal  = 1
	exitFenced = 3
)

// runChild runs one relay until SIGTERM (exit 0), fenced (exitFenced) or
// another error (exitFatal).
func runChild() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	stage, hold := os.Getenv("OUTBOX_STAGE"), os.Getenv("OUTBOX_HOLD")
	at, _ := strconv.Atoi(os.Getenv("OUTBOX_AT"))
	r, err := outbox.New(outbox.Config{
		Brokers: strings.Split(os.Getenv("OUTBOX_BROKERS"), ","), Name: os.Getenv("OUTBOX_NAME"),
		Postgres: os.Getenv("OUTBOX_CONN"), Topic: eventsTopic, MaxBatchRows: 50, PollInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		say("fatal: %v", err)
		return exitFatal
	}
	// The at-th batch, or the first to reach stage after it (a batch can
	// fail before it does and be read again by a new session).
	batches, held := 0, false
	outbox.SetHook(r, func(s string, b outbox.Batch) {
		if b.Rows == 0 {
			return
		}
		if s == outbox.StageRead {
			batches++
		}
		if s != stage || batches < at || held {
			return
		}
		held = true
		info, _ := json.Marshal(b)
		switch hold {
		case holdPass:
			say("at %s %s", s, info)
		case holdKill:
			say("hang %s %s", s, info)
			<-ctx.Done()
		case holdResume:
			say("hang %s %s", s, info)
			<-usr1
			say("resumed")
		}
	})
	if err := r.Run(ctx); err != nil {
		say("fatal: %v", err)
		if outbox.IsFenced(err) {
			return exitFenced
		}
		return exitFatal
	}
	say("stopped %+v", r.Stats())
	return 0
}

// relayProc starts a relay process named name (the relay's name), to act
// at stage of its at-th batch as hold says.
func (e *testEnv) relayProc(t *testing.T, name, proc, stage string, at int, hold string) *child.Process {
	t.Helper()
	cmd := child.Self(childEnv+"=1", "OUTBOX_BROKERS="+strings.Join(e.brokers, ","), "OUTBOX_CONN="+e.conn,
		"OUTBOX_NAME="+name, "OUTBOX_STAGE="+stage, "OUTBOX_AT="+strconv.Itoa(at), "OUTBOX_HOLD="+hold)
	return pgtest.StartChild(t, cmd, proc)
}

// killsDefault keeps TestRelayUnderKills near a minute with -race on a
// busy 2-core machine; OUTBOX_KILLS sets another count.
const killsDefault = 50

func kills(t *testing.T) int {
	s := os.Getenv("OUTBOX_KILLS")
	if s == "" {
		return killsDefault
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("OUTBOX_KILLS=%q: want a positive count", s)
	}
	return n
}

// Relay processes SIGKILLed again and again while writers keep writing:
// before a batch's transaction begins, with its records produced and not
// committed, while its EndTxn may be on the wire, and after its commit
// and before its rows are deleted, each after 1 to 3 batches. Then a last
// relay catches up. Read by franz-go and librdkafka, read_committed, with
// small and large fetches, every committed message is there exactly once,
// none of a rolled-back transaction, in commit order per key; the cursor
// topic's chain of cursors never goes back and no killed relay's
// transaction committed after its successor's claim.
func TestRelayUnderKills(t *testing.T) {
	n := kills(t)
	e := newEnv(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cursor topic, read_uncommitted:\n%s", e.dumpTopic(t, outbox.DefaultCursorTopic))
		}
	})
	ws := startWriters(t, e.pool, outbox.Table{}, 4, true, 300, 7)
	rng := rand.New(rand.NewPCG(15, 1))
	stages := []string{outbox.StageRead, outbox.StageProduced, outbox.StageCommit, outbox.StageDone}
	start := time.Now()
	count := map[string]int{}
	var onTheWire []outbox.Batch // the batches killed with their EndTxn perhaps sent
	var procs []*child.Process
	for k := range n {
		stage, at := stages[rng.IntN(len(stages))], 1+rng.IntN(3)
		hold := holdKill
		if stage == outbox.StageCommit {
			hold = holdPass // killed as soon as it says so: the EndTxn may be on the wire
		}
		count[stage]++
		p := e.relayProc(t, "crash", fmt.Sprintf("relay-%d", k), stage, at, hold)
		procs = append(procs, p)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s, killed at %s of batch %d, last lines:\n%s", p.Name, stage, at, p.Lines.Tail(5, nil))
			}
		})
		line := pgtest.WaitLine(t, p, p.Started, time.Minute, "hang "+stage, "at "+stage)
		p.Kill()
		if stage == outbox.StageCommit {
			var b outbox.Batch
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "at "+stage+" ")), &b); err != nil {
				t.Fatal(err)
			}
			onTheWire = append(onTheWire, b)
		}
		if !p.Killed() {
			t.Fatalf("kill %d: %s did not die of SIGKILL: %v\n%s", k, p.Name, p.Err(), p.Lines.Tail(20, nil))
		}
	}
	killed := time.Since(start)
	ws.halt(t)
	committed, txns := ws.counts()

	last := e.relayProc(t, "crash", "last", "", 0, "")
	procs = append(procs, last)
	pgtest.WaitFor(t, 2*time.Minute, "the last relay to relay every row", e.tableEmpty(t))
	if err := last.Stop(30 * time.Second); err != nil {
		t.Fatalf("the last relay: %v\n%s", err, last.Lines.Tail(20, nil))
	}
	msgs := e.verify(t, committed)
	records, sessions, bad := e.checkCursorChain(t, "crash")
	for _, b := range bad {
		t.Error("cursor chain:", b)
	}
	// Which of the transactions cut around their EndTxn committed: the
	// chain check above has shown that each one that did was seen by
	// the next session's claim, and none committed after it.
	committedCut := 0
	for _, b := range onTheWire {
		for _, c := range records {
			if c.Owner == b.Owner && c.Cursor == b.Next {
				committedCut++
			}
		}
	}
	ws.mu.Lock()
	late, rollbacks := ws.late, ws.rollbacks
	ws.mu.Unlock()
	unconfirmed, claims := 0, 0
	for _, p := range procs {
		for _, ln := range p.Lines.All() {
			if strings.Contains(ln.Text, "reported committed did not commit") {
				unconfirmed++
				if strings.Contains(ln.Text, " rows=0 ") {
					claims++
				}
			}
		}
	}
	t.Logf("%d SIGKILLs in %v (per stage %v; of the %d killed with their EndTxn perhaps sent, %d committed; %d transactions reported committed were not, %d of them claims); %d transactions committed (%d rolled back, %d long ones after a younger one), %d messages relayed exactly once; cursor topic: %d records, %d sessions",
		n, killed.Round(time.Millisecond), count, len(onTheWire), committedCut, unconfirmed, claims, txns, rollbacks, late, msgs, len(records), sessions)
}

// A zombie commits nothing. A relay is SIGSTOPped, once with a batch
// produced and not committed, once between batches; a second relay with
// the same name starts, takes over and relays everything; then the first
// is resumed (SIGCONT) with more rows to relay. It must stop, fenced,
// having committed nothing: every message is relayed exactly once, and
// the cursor topic holds no commit of the first relay after the second's
// claim.
func TestZombieCommitsNothing(t *testing.T) {
	for _, tc := range []struct{ name, stage string }{
		{"stopped mid-transaction", outbox.StageProduced},
		{"stopped between transactions", outbox.StageDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ws := startWriters(t, e.pool, outbox.Table{}, 3, true, 300, 11)
			a := e.relayProc(t, "zombie", "a", tc.stage, 2, holdResume)
			line := pgtest.WaitLine(t, a, a.Started, time.Minute, "hang "+tc.stage)
			if err := a.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := a.WaitStopped(ctx); err != nil {
				t.Fatal(err)
			}
			var held outbox.Batch
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "hang "+tc.stage+" ")), &held); err != nil {
				t.Fatal(err)
			}

			b := e.relayProc(t, "zombie", "b", "", 0, "")
			pgtest.WaitFor(t, time.Minute, "the second relay to relay past the zombie's batch", func() (bool, error) {
				var n int64
				err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM sluice_outbox WHERE (xid, seq) <= ($1::xid8, $2::bigint)",
					held.Next.Xid, held.Next.Seq).Scan(&n)
				return n == 0, err
			})
			resumed := time.Now()
			if err := a.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := a.Signal(syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			// The writers go on: the zombie finds rows after its cursor.
			pgtest.WaitLine(t, a, resumed, time.Minute, "fatal: ")
			if err := a.WaitExit(ctx); err != nil {
				t.Fatal(err)
			}
			var ee *exec.ExitError
			if err := a.Err(); !errors.As(err, &ee) || ee.ExitCode() != exitFenced {
				t.Fatalf("the zombie exited with %v, want exit %d (fenced)\n%s", err, exitFenced, a.Lines.Tail(20, nil))
			}
			ws.halt(t)
			committed, _ := ws.counts()
			pgtest.WaitFor(t, time.Minute, "the second relay to relay every row", e.tableEmpty(t))
			if err := b.Stop(30 * time.Second); err != nil {
				t.Fatalf("the second relay: %v\n%s", err, b.Lines.Tail(20, nil))
			}
			e.verify(t, committed)
			_, sessions, bad := e.checkCursorChain(t, "zombie")
			for _, b := range bad {
				t.Error("cursor chain:", b)
			}
			if sessions != 2 {
				t.Errorf("%d sessions in the cursor topic, want 2 (the zombie's, the second relay's)", sessions)
			}
			ln, _ := a.Lines.Find(resumed, "fatal: ")
			why, _ := a.Lines.Find(resumed, "new producer session")
			t.Logf("zombie held %+v; after SIGCONT:\n%s\n%s", held, why.Text, ln.Text)
		})
	}
}
