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
// seen within an hour of event time (DedupByKey).
func dedupTopology(app, in, out string) (*stream.Topology, error) {
	b := stream.NewBuilder(app)
	stream.From(b, in, serde.String, serde.Bytes, stream.Named("read-"+in)).
		DedupByKey(serde.String, time.Hour, stream.Named(dedupStore)).
		To(out, serde.String, serde.Bytes, stream.Named("write-"+out))
	return b.Build()
}

// dedupLoop is the sluice_eos_dedup variant: the dedup topology over input
// whose every key is new (n distinct ids, each stored and checked),
// exactly once, one worker, its state in a fresh directory. The output is
// the input, each record once.
func dedupLoop(ctx context.Context, e env, t topics, p *probe) error {
	dir, err := os.MkdirTemp("", "sluice-bench-dedup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	topo, err := dedupTopology(t.app, t.in, t.out)
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

// dedupChangelog returns the changelog topic of app's dedup store.
func dedupChangelog(app string) string { return topology.ChangelogTopic(app, dedupStore) }
