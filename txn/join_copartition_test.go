package txn_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/window"
)

// Two streams joined in a window, or two tables joined, whose topics have
// different partition counts fail at start, saying which topics differ and
// how to fix it.
func TestJoinCoPartitioningIsCheckedAtStart(t *testing.T) {
	c := newCluster(t, 4, "orders", "users", "out")
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 3, "payments", "regions"))
	for name, build := range map[string]func(b *stream.Builder){
		"stream-stream": func(b *stream.Builder) {
			payments := stream.From(b, "payments", serde.String, serde.String)
			stream.From(b, "orders", serde.String, serde.String).
				JoinStream("paid", payments, window.JoinWithin(time.Minute, 0), func(_, o, p string) string { return o + p },
					stream.JoinedWith(serde.String, serde.String, serde.String)).
				To("out", serde.String, serde.String)
		},
		"table-table": func(b *stream.Builder) {
			regions := stream.FromTable(b, "regions", serde.String, serde.String)
			stream.FromTable(b, "users", serde.String, serde.String).
				Join("user-regions", regions, func(_, u, r string) string { return u + r }, serde.String).
				ToStream().To("out", serde.String, serde.String)
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := stream.NewBuilder("copart-" + name)
			build(b)
			topo, err := b.Build()
			require.NoError(t, err)
			w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", StateDir: t.TempDir()})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = w.Run(ctx)
			require.ErrorContains(t, err, "partitions) and")
			require.ErrorContains(t, err, "(3 partitions)")
			require.ErrorContains(t, err, "(4 partitions)")
			require.ErrorContains(t, err, "Stream.Repartition")
		})
	}
}
