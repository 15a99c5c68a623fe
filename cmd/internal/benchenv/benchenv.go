// Package benchenv starts what the Postgres benchmarks (cmd/relaybench,
// cmd/sinkbench) run against, in their own process: a throwaway Postgres
// server (txn/pgserver, fsync off) with a database "bench" and a pool on
// it, and an embedded broker (txn/broker).
package benchenv

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/pgserver"
)

// Env is a running Postgres database and embedded broker. Close stops
// both.
type Env struct {
	// Conn is the database's connection string.
	Conn string
	// Pool is a pool on the database.
	Pool *pgxpool.Pool
	// Brokers is the embedded broker's address.
	Brokers []string

	stop []func()
}

// Start starts the server, creates the database, opens the pool and
// starts the broker. On an error, what it started is stopped again.
func Start(ctx context.Context) (env *Env, err error) {
	env = &Env{}
	defer func() {
		if err != nil {
			env.Close()
			env = nil
		}
	}()
	pg, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		return env, err
	}
	env.stop = append(env.stop, func() { pg.Stop() })
	if err := pg.CreateDB(ctx, "bench"); err != nil {
		return env, err
	}
	env.Conn = pg.ConnString("bench")
	if env.Pool, err = pgxpool.New(ctx, env.Conn); err != nil {
		return env, err
	}
	env.stop = append(env.stop, env.Pool.Close)
	cluster, addr, err := broker.Start(broker.Config{})
	if err != nil {
		return env, err
	}
	env.stop = append(env.stop, cluster.Close)
	env.Brokers = []string{addr}
	return env, nil
}

// Close stops the broker, closes the pool and stops the server, in that
// order.
func (e *Env) Close() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
	e.stop = nil
}
