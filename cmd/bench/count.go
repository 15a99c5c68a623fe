package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// countStore names the count's store: its changelog is
// <app>-counts-changelog.
const countStore = "counts"

// changelogOf returns the changelog topic of app's count store.
func changelogOf(app string) string { return topology.ChangelogTopic(app, countStore) }

// countTopology counts the records of each key of in, and writes every new
// count to out.
func countTopology(app, in, out string) (*stream.Topology, error) {
	b := stream.NewBuilder(app)
	stream.From(b, in, serde.String, serde.Bytes, stream.Named("read-"+in)).
		GroupByKey(serde.String, serde.Bytes).
		Count(countStore).
		ToStream().
		To(out, serde.String, serde.Int64, stream.Named("write-"+out))
	return b.Build()
}

// countLoop is the sluice_eos_count variant: the count topology, exactly
// once, one worker, its state in a fresh directory.
func countLoop(ctx context.Context, e env, t topics, p *probe) error {
	dir, err := os.MkdirTemp("", "sluice-bench-count-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := newCountWorker(e.brokers, t, "0", dir, e.log, kgo.WithHooks(p))
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// newCountWorker returns an exactly-once worker of the count topology
// reading t.in and writing t.out, with its state in dir. Every benchmark
// of the count topology (in this process or a child) starts it here.
func newCountWorker(brokers []string, t topics, instance, dir string, log *slog.Logger, opts ...kgo.Opt) (*txn.Worker, error) {
	topo, err := countTopology(t.app, t.in, t.out)
	if err != nil {
		return nil, err
	}
	return txn.NewWorker(topo, txn.Config{
		Brokers:        brokers,
		Instance:       instance,
		StateDir:       dir,
		SessionTimeout: sessionTimeout,
		Logger:         log,
		ClientOpts:     opts,
	})
}

// checkCounts verifies the output of the count topology over sequence
// numbers [0, n) with keys "k<seq mod keys>": read with read_committed,
// every key has exactly as many outputs as input records, the last of
// them its count, and nothing else is there. Under exactly_once a
// replayed record would show as a surplus output and a count off by one.
func checkCounts(ctx context.Context, brokers []string, topic string, n, keys int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	want := func(k int64) int64 {
		w := n / keys
		if k < n%keys {
			w++
		}
		return w
	}
	got := make([]int32, keys)  // outputs per key
	last := make([]int64, keys) // last count per key
	var records, foreign int64
	var decodeErr error
	consume := func(ctx context.Context) {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			records++
			k, err := strconv.ParseInt(string(r.Key[min(1, len(r.Key)):]), 10, 64)
			if len(r.Key) == 0 || r.Key[0] != 'k' || err != nil || k < 0 || k >= keys {
				foreign++
				return
			}
			v, err := serde.Int64.Decode(r.Value)
			if err != nil && decodeErr == nil {
				decodeErr = fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			got[k]++
			last[k] = v
		})
	}
	for records < n && ctx.Err() == nil {
		consume(ctx)
	}
	// Then until a second passes with nothing new: surplus outputs
	// committed after the last expected one count too.
	for ctx.Err() == nil {
		before := records
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		for pctx.Err() == nil {
			consume(pctx)
		}
		cancel()
		if records == before {
			break
		}
	}
	var wrong int64
	var first string
	for k := range keys {
		if w := want(k); int64(got[k]) != w || last[k] != w {
			if wrong == 0 {
				first = fmt.Sprintf("k%d: %d outputs, last count %d, want %d", k, got[k], last[k], want(k))
			}
			wrong++
		}
	}
	if records != n || wrong > 0 || foreign > 0 || decodeErr != nil {
		return fmt.Errorf("wrong counts in %s: %d records (want %d), %d keys wrong (first: %s), %d foreign, decode error: %v",
			topic, records, n, wrong, first, foreign, decodeErr)
	}
	return nil
}
