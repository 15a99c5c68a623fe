package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// shared is the server Main started for the test binary.
var shared struct {
	mu     sync.Mutex
	server *Server
	dbs    atomic.Int64
}

// Main starts one server for the test binary, runs its tests and stops
// the server: call it from TestMain. When the server does not start it
// prints why and exits 1 without running any test. A test binary
// re-executed as a child process (a worker the test kills) should not
// reach Main: dispatch to the child's code before it.
func Main(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := Start(ctx, Options{})
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
func Shared(t testing.TB) *Server {
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
func Current() *Server {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.server
}

// NewDB creates a new, empty database on s with a name unique in this
// process, and returns its connection string. The caller drops it
// (DropDB) or lets the server's Stop remove it.
func (s *Server) NewDB(ctx context.Context) (name, conn string, err error) {
	name = fmt.Sprintf("test_%d_%d", os.Getpid(), shared.dbs.Add(1))
	if err := s.CreateDB(ctx, name); err != nil {
		return "", "", err
	}
	return name, s.ConnString(name), nil
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

// CreateDB creates database name.
func (s *Server) CreateDB(ctx context.Context, name string) error {
	return s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDB drops database name, ending its sessions.
func (s *Server) DropDB(ctx context.Context, name string) error {
	return s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func (s *Server) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}
