// Package broker is sluice's embedded Kafka-protocol broker: franz-go's
// kfake, one node, with the corrections that make it keep the
// transactional guarantees sluice relies on as Kafka does. `runner broker`,
// the demos, the benchmarks and the tests all start it through Start.
//
// kfake is a test broker. Each way it departs from Kafka that sluice found
// is corrected here, outside kfake's code, by watching or rewriting the
// requests it receives, and each correction has a test that fails without
// it:
//   - fetch.go: a read_committed fetch is never cut partway through a
//     partition, so every partition's aborted transactions come with its
//     records (kfake drops the list of the partition it cuts);
//   - stable.go: an offset fetch that requires stable offsets is refused
//     only for the partitions with offsets pending in an open transaction
//     (kfake refuses the whole group);
//   - recover.go: transactions a crash left open are aborted, with their
//     markers written, before Start returns;
//   - restored.go: so are those open at a clean shutdown that a crash
//     after the restart left unrestored (kfake would let them commit);
//   - zombie.go: a producer fenced by another with its transactional id
//     stays fenced: its EndTxn is refused with PRODUCER_FENCED (kfake
//     takes an abort for a retry and hands it its successor's epoch);
//   - torn.go: a transaction whose commit a crash cut is completed on
//     restart, in every partition and with its offsets (kfake ends a
//     transaction in steps and logs no decision first);
//   - index.go: a segment index a crash left short of its segment is
//     rebuilt before kfake loads it (kfake reads a batch without an entry
//     as written outside any transaction, and shifts every later entry).
//
// The conformance suite (conformance_test.go) checks the guarantees
// themselves, read by franz-go and by librdkafka.
package broker

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

// Config configures an embedded broker. The zero value listens on a
// free port of 127.0.0.1 and keeps everything in memory.
type Config struct {
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

// Start starts a one-broker kfake cluster and returns it with the
// address it listens on. Close the cluster to stop it; with a DataDir,
// Close persists the full state.
//
// With a DataDir, the state found there is loaded and every produce,
// offset commit and transaction step is written through, so a kill -9
// loses no acknowledged write (Sync adds an fsync per write, for power
// loss). Transactions a crash left open are aborted on load, with their
// abort markers written before Start returns (see abortCrashedTxns), and
// so are those open at a clean shutdown that a crash after the restart
// left behind (see replayUnrestoredTxns).
//
// A read_committed fetch is never cut partway through a partition, so
// each partition's aborted transactions come with its records (see
// uncutFetches). An offset fetch requiring stable offsets is refused only
// for partitions with offsets pending in an open transaction, as Kafka
// does; kfake alone refuses the whole group (see stableOffsets). A
// producer fenced by another with its transactional id gets
// PRODUCER_FENCED for its EndTxn, as on Kafka; kfake alone may take it for
// a retry and hand it its successor's epoch (see fencedEnds).
//
// Control functions the caller adds run after the broker's own. The
// broker's own sleep (Cluster.SleepControl) while they ask the broker a
// question: on a require-stable OffsetFetch while transactions hold
// offsets of its group, and on the EndTxn requests of a transactional id
// from an InitProducerID until one comes at the current epoch (the
// producer's first, normally). A caller's control function must not sleep
// on those requests too: kfake mishandles a request that sleeps twice (a
// data race in its queue of sleeping requests, which can lose the
// request).
func Start(cfg Config) (*kfake.Cluster, string, error) {
	return start(cfg, allFixes)
}

// fixes is a set of the corrections to kfake that start installs. Start
// installs all; a test leaves one out to show that kfake alone fails what
// it corrects.
type fixes uint8

const (
	fixFetch      fixes = 1 << iota // uncutFetches
	fixStable                       // watchStableOffsets
	fixRecovery                     // abortCrashedTxns
	fixZombieEnd                    // watchFencedEnds
	fixRestored                     // replayUnrestoredTxns
	fixTornCommit                   // committing
	fixIndex                        // repairIndexes
	allFixes      = fixFetch | fixStable | fixRecovery | fixZombieEnd | fixRestored | fixTornCommit | fixIndex
)

func start(cfg Config, fix fixes) (*kfake.Cluster, string, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if fix&fixRestored != 0 {
		if err := replayUnrestoredTxns(cfg.DataDir); err != nil {
			return nil, "", fmt.Errorf("broker: read data dir %s: %w", cfg.DataDir, err)
		}
	}
	if fix&fixIndex != 0 {
		if err := repairIndexes(cfg.DataDir); err != nil {
			return nil, "", fmt.Errorf("broker: repair the segment indexes of data dir %s: %w", cfg.DataDir, err)
		}
	}
	if fix&fixTornCommit != 0 {
		if err := completeTornCommit(cfg.DataDir); err != nil {
			return nil, "", fmt.Errorf("broker: complete the transaction a crash cut in data dir %s: %w", cfg.DataDir, err)
		}
	}
	var crashed []crashedTxn
	if fix&fixRecovery != 0 {
		var err error
		if crashed, err = crashedTxns(cfg.DataDir); err != nil {
			return nil, "", fmt.Errorf("broker: read data dir %s: %w", cfg.DataDir, err)
		}
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
		return nil, "", fmt.Errorf("broker: listen on %s: %w (stop what holds the port or pick another address)", addr, err)
	case err != nil:
		return nil, "", fmt.Errorf("broker: start broker on %s: %w", addr, err)
	}
	listening := cluster.ListenAddrs()[0]
	if fix&fixFetch != 0 {
		uncutFetches(cluster)
	}
	if fix&fixStable != 0 {
		watchStableOffsets(cluster, listening)
	}
	if fix&fixZombieEnd != 0 {
		watchFencedEnds(cluster, listening)
	}
	if fix&fixTornCommit != 0 && cfg.DataDir != "" {
		if err := watchCommits(cluster, cfg.DataDir, cfg.Sync); err != nil {
			cluster.Close()
			return nil, "", fmt.Errorf("broker: data dir %s: %w", cfg.DataDir, err)
		}
	}
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
		return fmt.Errorf("broker: create topics: %w", err)
	}
	for _, r := range resps {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("broker: create topic %q: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// ask runs fn with a client of the broker at addr and a 5 s deadline: how
// a correction puts a question to the broker it corrects, while the
// request it decides on sleeps (Cluster.SleepControl). It returns false,
// without running fn, when no client can be made.
func ask(addr string, fn func(ctx context.Context, cl *kgo.Client)) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fn(ctx, cl)
	return true
}
