package txntest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/broker"
)

// Verify catches a broker that drops a partition's aborted transactions
// from a cut read_committed response: kfake alone does, and the aborted
// copies of sequence numbers committed again later show as duplicates to
// the reader with small fetches, not to the one with large fetches, so the
// readers disagree. The embedded broker is verified clean.
func TestVerifyCatchesACutResponseWithoutItsAbortedTransactions(t *testing.T) {
	const n = 16
	for _, tc := range []struct {
		name  string
		start func() (*kfake.Cluster, string, error)
		clean bool
	}{
		{"embedded broker", func() (*kfake.Cluster, string, error) { return broker.Start(broker.Config{}) }, true},
		{"kfake alone", func() (*kfake.Cluster, string, error) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1)) // on 127.0.0.1
			if err != nil {
				return nil, "", err
			}
			return c, c.ListenAddrs()[0], nil
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, addr, err := tc.start()
			require.NoError(t, err)
			defer c.Close()
			brokers := []string{addr}
			require.NoError(t, broker.CreateTopics(ctx, brokers, 1, "out"))

			// Sequence numbers [0, n) in an aborted transaction, one
			// batch each, then committed.
			for _, end := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
				cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("p"), kgo.DefaultProduceTopic("out"),
					kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(1))
				require.NoError(t, err)
				require.NoError(t, cl.BeginTransaction())
				for seq := range int64(n) {
					require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Value: SeqValue(seq, 100)}).FirstErr())
				}
				require.NoError(t, cl.EndTransaction(ctx, end))
				cl.Close()
			}

			rep, err := Verify(ctx, brokers, "out", n)
			if tc.clean {
				require.NoError(t, err)
				require.True(t, rep.Clean(), "%s", rep)
				require.EqualValues(t, n, rep.Records)
				return
			}
			require.ErrorContains(t, err, "readers disagree")
			require.ErrorContains(t, err, "duplicates=16")
		})
	}
}
