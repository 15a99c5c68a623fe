package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/revenue"
)

// runner sink postgres revenue lands the app's output in
// revenue_per_minute (one row per customer and window, upserted), sends a
// record that does not decode to the dead-letter table, and a second run
// resumes where the first stopped; SIGTERM exits 0.
func TestSinkPostgresRevenue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, pool := startPostgres(ctx, t)
	addr := startTestBroker(t, 2, "revenue-per-minute")
	cl := newClient(t, addr, kgo.DefaultProduceTopic("revenue-per-minute"))
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			ws := start.Add(time.Duration(i/10) * time.Minute)
			r := revenue.Result{CustomerID: fmt.Sprintf("c%d", i%10), WindowStart: ws.Format(revenue.TimeFormat),
				WindowEnd: ws.Add(time.Minute).Format(revenue.TimeFormat), Totals: revenue.Totals{Orders: int64(i%3 + 1), RevenueCents: int64(i)}}
			v, _ := json.Marshal(r)
			require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Key: []byte(r.CustomerID), Value: v}).FirstErr())
		}
	}
	produce(0, 50)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Key: []byte("c0"), Value: []byte("{not json")}).FirstErr())

	count := func(sql string) int64 {
		var n int64
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	waitCount := func(sql string, want int64) {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for count(sql) != want {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: %d, want %d", sql, count(sql), want)
			case <-tick.C:
			}
		}
	}
	args := []string{"sink", "postgres", "revenue", "--brokers", addr, "--instance", "s1", "--session-timeout", "6s"}
	p := startRunner(t, runnerEnv("SLUICE_POSTGRES="+conn), args...)
	waitCount("SELECT count(*) FROM revenue_per_minute", 50)
	waitCount("SELECT count(*) FROM sluice_sink_dead_letters", 1)
	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), p.stderr())

	produce(50, 80)
	p = startRunner(t, runnerEnv("SLUICE_POSTGRES="+conn), args...)
	waitCount("SELECT count(*) FROM revenue_per_minute", 80)
	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), p.stderr())
	var sum int64
	require.NoError(t, pool.QueryRow(ctx, "SELECT sum(revenue_cents)::bigint FROM revenue_per_minute").Scan(&sum))
	require.Equal(t, int64(79*80/2), sum)
	var dlErr string
	require.NoError(t, pool.QueryRow(ctx, "SELECT error FROM sluice_sink_dead_letters").Scan(&dlErr))
	require.Contains(t, dlErr, "decode value")
}

// Usage errors exit 2 with a message that says what to fix.
func TestSinkUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"sink"}, "missing the kind of sink"},
		{[]string{"sink", "mysql"}, `unknown kind of sink "mysql"`},
		{[]string{"sink", "postgres"}, "missing APP"},
		{[]string{"sink", "postgres", "nope"}, `unknown app "nope"`},
		{[]string{"sink", "postgres", "dedup"}, "--postgres is required"},
		{[]string{"sink", "postgres", "dedup", "--postgres", "x", "--on-error", "retry"}, "--on-error"},
	})
}
