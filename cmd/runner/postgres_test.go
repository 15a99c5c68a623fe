package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/txn/pgserver"
)

// startPostgres starts a throwaway Postgres server with a database "app"
// and returns its connection string and a pool on it; both end with t.
func startPostgres(ctx context.Context, t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	pg, err := pgserver.Start(ctx, pgserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { pg.Stop() })
	require.NoError(t, pg.CreateDB(ctx, "app"))
	conn := pg.ConnString("app")
	pool, err := pgxpool.New(ctx, conn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return conn, pool
}

// usageCase is a command line that must exit 2 with want in its stderr.
type usageCase struct {
	args []string
	want string
}

// checkUsage runs each case and checks that it exits 2 and says want.
func checkUsage(t *testing.T, cases []usageCase) {
	t.Helper()
	for _, tc := range cases {
		var out, errOut strings.Builder
		code := dispatch(context.Background(), tc.args, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
