package main

import (
	"context"
	"os"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// dedupStore names the dedup's store.
const dedupStore = "ids"

// dedupTopology copies each record of in to out the first time its key is
// seen within an hour of event time (DedupByKey). The sluice_eos_dedup
// variant runs it over input whose every key is new (n distinct ids, each
// stored and checked); its output is the input, each record once.
func dedupTopology(app, in, out string) (*stream.Topology, error) {
	return dedupTopologySpan(app, in, out, time.Hour)
}

// dedupTopologySpan is dedupTopology with a dedup span of span: the
// bounded benchmark's worker process runs it (childConfig.DedupSpan).
func dedupTopologySpan(app, in, out string, span time.Duration) (*stream.Topology, error) {
	b := stream.NewBuilder(app)
	stream.From(b, in, serde.String, serde.Bytes, stream.Named("read-"+in)).
		DedupByKey(dedupStore, serde.String, span).
		To(out, serde.String, serde.Bytes, stream.Named("write-"+out))
	return b.Build()
}

// statefulLoop returns a variant's loop that runs build's topology with
// one exactly-once worker, its state in a fresh directory (removed after).
func statefulLoop(build func(app, in, out string) (*stream.Topology, error)) func(context.Context, env, topics, *probe) error {
	return func(ctx context.Context, e env, t topics, p *probe) error {
		dir, err := os.MkdirTemp("", "sluice-bench-"+t.app+"-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		topo, err := build(t.app, t.in, t.out)
		if err != nil {
			return err
		}
		w, err := txn.NewWorker(topo, txn.Config{
			Brokers:        e.brokers,
			Instance:       "0",
			StateDir:       dir,
			SessionTimeout: sessionTimeout,
			Logger:         e.log,
			ClientOpts:     []kgo.Opt{kgo.WithHooks(p)},
		})
		if err != nil {
			return err
		}
		return w.Run(ctx)
	}
}

// dedupChangelog returns the changelog topic of app's dedup store.
func dedupChangelog(app string) string { return topology.ChangelogTopic(app, dedupStore) }
