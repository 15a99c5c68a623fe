package pgtest_test

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/txn/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Each test gets a database of its own, usable at once and empty.
func TestPoolIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.Pool(t), pgtest.Pool(t)
	if _, err := a.Exec(ctx, "CREATE TABLE x (n int PRIMARY KEY); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT n FROM x").Scan(&n); err != nil || n != 1 {
		t.Fatalf("n = %d, %v", n, err)
	}
	if _, err := b.Exec(ctx, "SELECT n FROM x"); err == nil {
		t.Fatal("the second database sees the first's table")
	}
}
