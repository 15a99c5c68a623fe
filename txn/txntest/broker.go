// Package txntest holds what tests, the demo and the benchmarks need to
// exercise the runtime against a real Kafka protocol peer: the embedded
// broker (franz-go's kfake), topic set-up, a producer of sequence-numbered
// records and a read_committed verifier that finds every sequence number
// that was lost or duplicated.
package txntest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BrokerConfig configures an embedded broker. The zero value listens on a
// free port of 127.0.0.1 and keeps everything in memory.
type BrokerConfig struct {
	// Addr is the listen address. Default "127.0.0.1:0" (a free port).
	Addr string
	// DataDir, when set, persists the log, offsets and transactions so
	// that a restart on the same directory (also after kill -9) keeps
	// them. Two brokers must never share one.
	DataDir string
	// Sync makes every write durable before it is acknowledged.
	Sync bool
	// Log receives kfake's warnings and errors; nil discards them.
	Log io.Writer
	// Opts are extra kfake options, applied last (fault injection).
	Opts []kfake.Opt
}

// StartBroker starts a one-broker kfake cluster and returns it with the
// address it listens on. Close the cluster to stop it; with a DataDir,
// Close persists the full state.
//
// With a DataDir, the state found there is loaded and every produce,
// offset commit and transaction step is written through, so a kill -9
// loses no acknowledged write (Sync adds an fsync per write, for power
// loss). Transactions a crash left open are aborted on load, with their
// abort markers written before StartBroker returns (see abortCrashedTxns).
//
// An offset fetch requiring stable offsets is refused only for partitions
// with offsets pending in an open transaction, as Kafka does; kfake alone
// refuses the whole group (see stableOffsets). Control functions the
// caller adds run after the broker's own.
func StartBroker(cfg BrokerConfig) (*kfake.Cluster, string, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	crashed, err := crashedTxns(cfg.DataDir)
	if err != nil {
		return nil, "", fmt.Errorf("txntest: read data dir %s: %w", cfg.DataDir, err)
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake listens on 127.0.0.1 only; this honours the host too.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, addr)
		}),
		kfake.ClusterID("sluice"),
		// Like Kafka's num.partitions for CreateTopics with -1 (kfake's
		// own default is 10). Auto-creation stays off: a missing topic is
		// an error, not a surprise topic.
		kfake.DefaultNumPartitions(1),
		// Kafka's floor is 6s; tests want dead workers noticed sooner.
		kfake.GroupMinSessionTimeout(500 * time.Millisecond),
		kfake.WithLogger(kfake.BasicLogger(log, kfake.LogLevelWarn)),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.Sync {
		opts = append(opts, kfake.SyncWrites())
	}
	cluster, err := kfake.NewCluster(append(opts, cfg.Opts...)...)
	if err != nil && cfg.DataDir != "" {
		err = fmt.Errorf("with data dir %s: %w", cfg.DataDir, err)
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, "", fmt.Errorf("txntest: listen on %s: %w (stop what holds the port or pick another address)", addr, err)
	case err != nil:
		return nil, "", fmt.Errorf("txntest: start broker on %s: %w", addr, err)
	}
	listening := cluster.ListenAddrs()[0]
	watchStableOffsets(cluster, listening)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := abortCrashedTxns(ctx, listening, crashed); err != nil {
		cluster.Close()
		return nil, "", err
	}
	return cluster, listening, nil
}

// CreateTopics creates topics with partitions partitions each; topics that
// exist already are left alone.
func CreateTopics(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("txntest: create topics: %w", err)
	}
	for _, r := range resps {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("txntest: create topic %q: %w", r.Topic, r.Err)
		}
	}
	return nil
}
