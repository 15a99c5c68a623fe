package txn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Global tables on the embedded broker: restored before processing, so the
// first visits already find their country; kept current, so a rename is
// seen by later visits; joined whatever the partitioning.
func TestGlobalTableRestoredAndKeptCurrent(t *testing.T) {
	const countries, visits = 20, 2000
	c := newCluster(t, 3, "countries", "visits", "named")
	b := stream.NewBuilder("geo")
	table := stream.FromGlobalTable(b, "countries", serde.String, serde.String)
	stream.From(b, "visits", serde.String, serde.String).
		JoinGlobal(table, func(_, code string) string { return code }, func(user, _, name string) string { return user + " " + name }).
		To("named", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	ctx := c.ctx(2 * time.Minute)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	produce := func(topic, k, v string) {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(v)}, nil)
	}
	for i := range countries {
		produce("countries", fmt.Sprintf("c%d", i), fmt.Sprintf("name%d", i))
	}
	require.NoError(t, cl.Flush(ctx))

	ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir()})
	ws.start("w1")
	ws.start("w2")
	for i := range visits {
		produce("visits", fmt.Sprintf("u%d", i), fmt.Sprintf("c%d", i%countries))
	}
	require.NoError(t, cl.Flush(ctx))

	got := readN(ctx, t, c.brokers, "named", visits)
	for i := range visits {
		require.Equal(t, fmt.Sprintf("name%d", i%countries), got[fmt.Sprintf("u%d", i)], "visit u%d", i)
	}

	produce("countries", "c0", "renamed")
	require.NoError(t, cl.Flush(ctx))
	require.Eventually(t, func() bool {
		produce("visits", "late", "c0")
		require.NoError(t, cl.Flush(ctx))
		return readN(ctx, t, c.brokers, "named", 0)["late"] == "renamed"
	}, time.Minute, 200*time.Millisecond, "a global table update is never seen")
	ws.stopAll()
	ws.requireNoErrors()
}

// readN reads topic with read_committed until it holds at least n records
// and a second passes with nothing new; it returns the last value per key
// and requires every key but "late" to appear once.
func readN(ctx context.Context, t *testing.T, brokers []string, topic string, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	read := 0
	require.NoError(t, txntest.ReadCommitted(ctx, brokers, topic, func(r *kgo.Record) {
		read++
		user, name, _ := strings.Cut(string(r.Value), " ")
		if _, dup := got[user]; dup && user != "late" {
			require.Failf(t, "duplicate", "%s twice", user)
		}
		got[user] = name
	}, func() bool { return read >= n }))
	return got
}
