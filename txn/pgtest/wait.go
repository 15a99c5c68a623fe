package pgtest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/txn/txntest/child"
)

// Count runs sql, a query of one bigint (a count(*)), on pool and returns
// its result. An error fails t, naming the query.
func Count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// WaitFor calls cond every 10ms until it holds, and fails t, naming what
// it waited for, when cond returns an error or d passes first.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after %v", what, d)
		}
		<-tick.C
	}
}

// StartChild starts cmd (a child.Self of the test binary: a relay or sink
// process) as the process name, and fails t when it does not start. When
// t ends the process is killed if it still runs, and, if t failed and
// the test had not killed the process, its last 30 lines are logged.
func StartChild(t testing.TB, cmd *exec.Cmd, name string) *child.Process {
	t.Helper()
	p, err := child.Start(cmd, child.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.HasExited() {
			p.Kill()
		}
		if t.Failed() && !p.Killed() {
			t.Logf("%s's last lines:\n%s", name, p.Lines.Tail(30, nil))
		}
	})
	return p
}

// WaitLine waits for a line of p's since since that holds one of subs,
// and returns it. It fails t, with p's last 30 lines, when p exits or d
// passes first.
func WaitLine(t testing.TB, p *child.Process, since time.Time, d time.Duration, subs ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := p.Lines.Wait(ctx, since, p.Exited(), subs...); err != nil {
		t.Fatalf("%s: %v\n%s", p.Name, err, p.Lines.Tail(30, nil))
	}
	ln, _ := p.Lines.Find(since, subs...)
	return ln.Text
}
