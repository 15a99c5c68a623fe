package txn_test

import (
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A customers table written with librdkafka's CRC32 partitioner puts most
// customers on partitions their orders never reach: the worker says so,
// naming the topic, partition, offset and the fix, and counts them, while
// processing and while restoring. Written with Kafka's murmur2, nothing
// is reported.
func TestPartitionerCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hasher kgo.PartitionerHasher
		warns  bool
	}{
		{"crc32", kgo.SaramaHasher(crc32.ChecksumIEEE), true},
		{"murmur2", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const customers, orders = 20, 200
			c := newCluster(t, 4, "orders", "customers", "orders-enriched")
			ctx := c.ctx(2 * time.Minute)
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(tc.hasher)))
			require.NoError(t, err)
			defer cl.Close()
			for i := range customers {
				r := &kgo.Record{Topic: "customers", Key: fmt.Appendf(nil, "c%d", i), Value: []byte(`{}`)}
				require.NoError(t, cl.ProduceSync(ctx, r).FirstErr())
			}
			produceOrders := func(from, to int) {
				for i := from; i < to; i++ {
					v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":1}`, i, i%customers)
					require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: v}).FirstErr())
				}
			}
			produceOrders(0, orders)
			topo, err := enrich.Build("enrich", "orders", "customers", "orders-enriched")
			require.NoError(t, err)

			// run starts a worker on a new state directory, waits until
			// the first want orders are enriched, stops it and returns its
			// log and its count of misplaced records.
			run := func(instance string, want int) (string, float64) {
				var log txntest.SyncBuffer
				reg := prometheus.NewRegistry()
				ws := c.workers(topo, txn.Config{SessionTimeout: 3 * time.Second, StateDir: t.TempDir(), Registerer: reg,
					Logger: slog.New(slog.NewTextHandler(&log, nil))})
				ws.start(instance)
				n := 0
				require.NoError(t, txntest.ReadCommitted(ctx, c.brokers, "orders-enriched", func(*kgo.Record) { n++ },
					func() bool { return n >= want }))
				ws.stopAll()
				ws.requireNoErrors()
				return log.String(), counterValue(reg, "sluice_records_mispartitioned_total")
			}
			log, count := run("w1", orders)
			if !tc.warns {
				require.NotContains(t, log, "not on the partition")
				require.Zero(t, count)
				return
			}
			require.Contains(t, log, "a record is not on the partition Kafka's default partitioner (murmur2 of the key) gives its key")
			require.Contains(t, log, "topic=customers")
			require.Contains(t, log, "librdkafka and kcat: partitioner=murmur2_random")
			require.Equal(t, 1, strings.Count(log, "not on the partition"), "one warning for the topic")
			require.Greater(t, count, float64(customers/2), "most of the %d customers are misplaced", customers)

			// A second worker restores the table from its topic, for the
			// orders that came since.
			produceOrders(orders, 2*orders)
			log, count = run("w2", 2*orders)
			require.Contains(t, log, "restoring_task=")
			require.Greater(t, count, float64(customers/2))
		})
	}
}
