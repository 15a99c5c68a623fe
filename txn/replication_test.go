package txn_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
)

// replicas returns the replica count of each partition of each topic.
func replicas(ctx context.Context, t *testing.T, brokers []string, topics ...string) map[string][]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	require.NoError(t, err)
	got := map[string][]int{}
	for _, topic := range topics {
		d := details[topic]
		require.NoError(t, d.Err, topic)
		for _, p := range d.Partitions.Sorted() {
			got[topic] = append(got[topic], len(p.Replicas))
		}
	}
	return got
}

// CreateTopics gives every topic it creates, source, sink and internal,
// the replication factor it is asked for, and -1 leaves it to the
// brokers (kfake's default: 3, at most the broker count).
func TestCreateTopicsReplicationFactor(t *testing.T) {
	c, addr, err := broker.Start(broker.Config{Opts: []kfake.Opt{kfake.NumBrokers(3)}})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tt := range []struct {
		app  string
		rf   int16
		want int
	}{
		{"rf-two", 2, 2},
		{"rf-default", -1, 3},
	} {
		topo, err := sumTopology(tt.app, tt.app+"-in", tt.app+"-out")
		require.NoError(t, err)
		created, err := txn.CreateTopics(ctx, topo, []string{addr}, 2, tt.rf)
		require.NoError(t, err)
		require.Contains(t, created, tt.app+"-in")
		require.Contains(t, created, tt.app+"-out")
		for _, it := range topo.InternalTopics() {
			require.Contains(t, created, it.Name)
		}
		for topic, rfs := range replicas(ctx, t, []string{addr}, created...) {
			require.Equal(t, []int{tt.want, tt.want}, rfs, "replicas of %s", topic)
		}
	}
	topo, err := sumTopology("rf-zero", "in", "out")
	require.NoError(t, err)
	_, err = txn.CreateTopics(ctx, topo, []string{addr}, 2, 0)
	require.ErrorContains(t, err, "replication factor 0: need at least 1, or -1 for the brokers' default")
}

// A worker creates its internal topics with Config.ReplicationFactor
// replicas, and when the cluster cannot have that many it stops at start
// with an error naming the topic, the factor and the setting.
func TestWorkerReplicationFactorTooLarge(t *testing.T) {
	c := newCluster(t, 2, "in", "out")
	topo, err := sumTopology("rf-large", "in", "out")
	require.NoError(t, err)
	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", StateDir: t.TempDir(),
		ReplicationFactor: 2, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	err = w.Run(c.ctx(time.Minute))
	require.Error(t, err)
	var changelog string
	for _, it := range topo.InternalTopics() {
		if it.Purpose == "changelog" {
			changelog = it.Name
		}
	}
	require.NotEmpty(t, changelog)
	require.ErrorContains(t, err, `create internal changelog topic "`+changelog+`" with replication factor 2`)
	require.ErrorContains(t, err, "INVALID_REPLICATION_FACTOR")
	require.ErrorContains(t, err, "(runner: --replication-factor)")

	// With a factor the single broker can have, the same worker starts
	// and its internal topics get it.
	w, err = txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1", StateDir: t.TempDir(),
		ReplicationFactor: 1, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := c.ctx(time.Minute)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	waitHealth(ctx, t, w, func(h txn.Health) bool { return h.Ready })
	stop()
	require.NoError(t, <-done)
	var internal []string
	for _, it := range topo.InternalTopics() {
		internal = append(internal, it.Name)
	}
	for topic, rfs := range replicas(ctx, t, c.brokers, internal...) {
		require.Equal(t, []int{1, 1}, rfs, "replicas of %s", topic)
	}
}
