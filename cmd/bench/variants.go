package main

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// variant is one measured loop.
type variant struct {
	name string
	eos  bool // duplicates are a failure
	run  func(ctx context.Context, e env, t topics, p *probe) error

	state bool  // a state variant: run by default only with -state
	keys  int64 // distinct input keys; 0: one per record
	// check, when set, verifies the output instead of txntest.Verify.
	check func(ctx context.Context, e env, t topics, n int64) error
	// internal are the topics the loop creates, besides in, out and dlq.
	internal func(t topics) []string
	// produce, when set, writes the input instead of txntest.Produce.
	produce func(ctx context.Context, brokers []string, topic string, n int64, size int) error
}

// env is what every variant shares.
type env struct {
	brokers []string
	log     *slog.Logger
}

// topics names one variant's topics and group.
type topics struct {
	app     string // group id (and sluice app id)
	in, out string
}

func variants(o options) []variant {
	sluice := func(g txn.Guarantee, maxBatch int) func(context.Context, env, topics, *probe) error {
		return func(ctx context.Context, e env, t topics, p *probe) error {
			topo, err := passthrough.Build(t.app, t.in, t.out)
			if err != nil {
				return err
			}
			return runWorker(ctx, e, p, topo, g, maxBatch)
		}
	}
	raw := func(maxBatch int) func(context.Context, env, topics, *probe) error {
		return func(ctx context.Context, e env, t topics, p *probe) error {
			return rawLoop{
				brokers: e.brokers, group: t.app, in: t.in, out: t.out,
				maxBatch: maxBatch, batchMax: batchMaxBytes, log: e.log, hooks: p,
			}.run(ctx)
		}
	}
	small := strconv.Itoa(o.txnRecords)
	// Interleaved, so that a slow phase of a noisy machine does not fall
	// on one kind of loop only.
	return []variant{
		{name: "raw_eos", eos: true, run: raw(o.rawRecords)},
		{name: "sluice_eos", eos: true, run: sluice(txn.ExactlyOnce, 0)},
		{name: "sluice_alos", run: sluice(txn.AtLeastOnce, 0)},
		{name: "raw_eos_" + small, eos: true, run: raw(o.txnRecords)},
		{name: "sluice_eos_" + small, eos: true, run: sluice(txn.ExactlyOnce, o.txnRecords)},
		{name: "sluice_eos_fanout", eos: true, run: fanoutLoop(o.partitions), state: true, keys: o.countKeys, check: checkFanout,
			internal: func(t topics) []string { return []string{fanoutSecond(t)} }},
		{name: "sluice_eos_count", eos: true, run: countLoop, state: true, keys: o.countKeys,
			check: func(ctx context.Context, e env, t topics, n int64) error {
				return checkCounts(ctx, e.brokers, t.out, n, o.countKeys)
			},
			internal: func(t topics) []string { return []string{changelogOf(t.app)} }},
		{name: "sluice_eos_dedup", eos: true, run: statefulLoop(dedupTopology), state: true,
			internal: func(t topics) []string { return []string{dedupChangelog(t.app)} }},
		{name: "sluice_eos_wcount", eos: true, run: statefulLoop(wcountTopology), state: true, produce: produceTimed, check: checkWindowCounts,
			internal: func(t topics) []string { return []string{wcountChangelog(t.app)} }},
	}
}

// runWorker runs one sluice worker (instance "0") of topo under g, with
// at most maxBatch records per transaction (0: the default), until ctx is
// done.
func runWorker(ctx context.Context, e env, p *probe, topo topology.Topology, g txn.Guarantee, maxBatch int) error {
	w, err := txn.NewWorker(topo, txn.Config{
		Brokers:         e.brokers,
		Instance:        "0",
		Guarantee:       g,
		MaxBatchRecords: maxBatch,
		SessionTimeout:  sessionTimeout,
		Logger:          e.log,
		ClientOpts:      []kgo.Opt{kgo.WithHooks(p)},
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// ratio is a figure the project targets, or (target 0) one that explains
// another.
type ratio struct {
	num, den string
	target   float64
}

func ratios(txnRecords int) []ratio {
	small := strconv.Itoa(txnRecords)
	return []ratio{
		{"sluice_eos", "raw_eos", 0.90},
		{"sluice_eos", "sluice_alos", 0.90},
		{"sluice_eos_" + small, "raw_eos_" + small, 0.85},
		{"sluice_eos_count", "raw_eos", 0.60},
		{"sluice_eos_dedup", "raw_eos", 0.50},
		{"sluice_eos_wcount", "raw_eos", 0.50},
		// No targets: where the count's cost goes (fanout.go).
		{"sluice_eos_fanout", "raw_eos", 0},
		{"sluice_eos_count", "sluice_eos_fanout", 0},
	}
}
