package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/outbox"
)

// runner relay postgres relays the outbox rows written before and while
// it runs, each once, to the row's topic or --topic; a second run resumes
// from the cursor; SIGTERM exits 0.
func TestRelayPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, pool := startPostgres(ctx, t)
	require.NoError(t, (outbox.Table{}).Create(ctx, pool))
	addr := startTestBroker(t, 2, "orders", "audit")

	write := func(from, to int) {
		for i := from; i < to; i++ {
			topic := ""
			if i%5 == 0 {
				topic = "audit"
			}
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				return (outbox.Table{}).Write(ctx, tx, outbox.Message{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprintf("%03d", i))})
			})
			require.NoError(t, err)
		}
	}
	empty := func() {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var n int64
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM sluice_outbox").Scan(&n))
			if n == 0 {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d outbox rows left", n)
			case <-tick.C:
			}
		}
	}
	write(0, 40)
	args := []string{"relay", "postgres", "--brokers", addr, "--name", "orders-relay", "--topic", "orders", "--poll-interval", "10ms"}
	p := startRunner(t, runnerEnv("SLUICE_POSTGRES="+conn), args...)
	write(40, 60)
	empty()
	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), p.stderr())

	write(60, 80)
	p = startRunner(t, runnerEnv("SLUICE_POSTGRES="+conn), args...)
	empty()
	require.Equal(t, 0, p.signal(t, syscall.SIGTERM), p.stderr())

	var orders, audit []string
	for i := range 80 {
		if i%5 == 0 {
			audit = append(audit, fmt.Sprintf("%03d", i))
		} else {
			orders = append(orders, fmt.Sprintf("%03d", i))
		}
	}
	for topic, want := range map[string][]string{"orders": orders, "audit": audit} {
		got := readCommittedAll(ctx, t, addr, topic, len(want))
		require.ElementsMatch(t, want, got, "topic %s", topic)
	}
}

// readCommittedAll reads topic with read_committed until it has n records
// and returns their values.
func readCommittedAll(ctx context.Context, t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var values []string
	for len(values) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "reading %s: %d records of %d", topic, len(values), n)
		fs.EachRecord(func(r *kgo.Record) { values = append(values, string(r.Value)) })
	}
	return values
}

// Usage errors exit 2 with a message that says what to fix.
func TestRelayUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"relay"}, "missing the kind of relay"},
		{[]string{"relay", "mysql"}, `unknown kind of relay "mysql"`},
		{[]string{"relay", "postgres"}, "--postgres is required"},
		{[]string{"relay", "postgres", "--postgres", "host=x", "--name", ""}, "no relay name"},
		{[]string{"relay", "postgres", "--postgres", "host=x", "--topic", "c", "--cursor-topic", "c"}, "topics of their own"},
		{[]string{"relay", "postgres", "--postgres", "host=x", "--table", "a.b.c"}, "want name or schema.name"},
	})
}
