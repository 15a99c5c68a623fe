// Package pgtest gives tests a real, throwaway Postgres (package
// pgserver: initdb in a temp dir, a Unix socket, run as user postgres
// when root) and a database per test. It is support code: nothing that
// ships imports it.
//
// A test package starts one server for all its tests in TestMain and
// gives each test a database of its own:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		pool := pgtest.Pool(t) // a new, empty database; dropped at the end
//		...
//	}
//
// A missing Postgres fails the test binary with a message saying so
// (`make postgres` installs it); it never skips a test.
//
// It also holds what the sink's and the relay's tests share beyond the
// database: Count (a count query), WaitFor (a condition polled to a
// deadline), StartChild and WaitLine (a relay or sink in a child process).
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/txn/pgserver"
)

// shared is the server Main started for the test binary.
var shared struct {
	mu     sync.Mutex
	server *pgserver.Server
}

// Main starts one server for the test binary, runs its tests and stops
// the server: call it from TestMain. When the server does not start it
// prints why and exits 1 without running any test. A test binary
// re-executed as a child process (a worker the test kills) should not
// reach Main: dispatch to the child's code before it.
func Main(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := pgserver.Start(ctx, pgserver.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.mu.Lock()
	shared.server = s
	shared.mu.Unlock()
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: stopping postgres:", err)
	}
	os.Exit(code)
}

// Shared returns the server Main started. It fails t when there is none.
func Shared(t testing.TB) *pgserver.Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.server == nil {
		t.Fatal("pgtest: no server: call pgtest.Main(m) from TestMain")
	}
	return shared.server
}

// Current returns the server Main started, or nil: for Example
// functions, which have no testing.TB.
func Current() *pgserver.Server {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.server
}

// DB creates a new, empty database on the shared server and returns its
// connection string. The database is dropped when t ends (its sessions
// ended first).
func DB(t testing.TB) string {
	t.Helper()
	s := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, conn, err := s.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.DropDB(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return conn
}

// Pool returns a pool connected to a new, empty database on the shared
// server (see DB), closed when t ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	conn := DB(t)
	pool, err := pgxpool.New(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
