package txn_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/stretchr/testify/require"
)

// A stream joined with a table of another partition count fails at start,
// saying which topics differ and how to fix it.
func TestCoPartitioningIsCheckedAtStart(t *testing.T) {
	c := newCluster(t, 4, "orders", "out")
	require.NoError(t, broker.CreateTopics(c.ctx(30*time.Second), c.brokers, 3, "customers"))
	b := stream.NewBuilder("copart")
	customers := stream.FromTable(b, "customers", serde.String, serde.String)
	stream.From(b, "orders", serde.String, serde.String).
		Join(customers, func(_, o, c string) string { return o + c }).
		To("out", serde.String, serde.String)
	topo, err := b.Build()
	require.NoError(t, err)
	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", StateDir: t.TempDir()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = w.Run(ctx)
	require.ErrorContains(t, err, `reads "customers" (3 partitions) and "orders" (4 partitions)`)
	require.ErrorContains(t, err, "Stream.Repartition")
}
