package txn_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/examples/passthrough"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/txn/txntest/child"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// at_least_once loses nothing, verified by sequence numbers, across a
// worker SIGKILLed after producing and restarted.
func TestAtLeastOnceLosesNothing(t *testing.T) {
	f, ws, n := crashScenario(t, txn.AtLeastOnce, crashPoint{key: kmsg.Produce, commits: 2})
	rep := verifyOutput(t, f.brokers, n, 2*time.Minute)
	require.Zero(t, rep.NumMissing, "%s", rep)
	require.Zero(t, rep.Foreign, "%s", rep)
	f.stopAll(ws...)
}

// at_most_once duplicates nothing, verified by sequence numbers, across a
// worker SIGKILLed after producing and restarted.
func TestAtMostOnceDuplicatesNothing(t *testing.T) {
	f, ws, n := crashScenario(t, txn.AtMostOnce, crashPoint{key: kmsg.Produce, commits: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Eventually(t, func() bool { return consumed(ctx, f.adm, f.cfg.app) }, time.Minute, 50*time.Millisecond,
		"the workers did not get through the input")
	// Dead workers write nothing more: what is in "out" then is final.
	// (SIGKILL, not a graceful stop: at_most_once commits offsets before
	// it processes, so the workers may still be busy; a graceful stop is
	// TestPlainWorkerStopsMidBatch's subject.)
	for _, p := range ws {
		p.signal(syscall.SIGKILL)
		p.waitExit(10 * time.Second)
	}
	rep := tally(readAll(t, f.brokers, "out"), n)
	t.Logf("output: %s", rep)
	require.Zero(t, rep.Duplicates, "%s", rep)
	require.Zero(t, rep.Foreign, "%s", rep)
}

// A worker of a plain guarantee stopped in the middle of a batch (its
// context cancelled) returns from Run promptly, as Run promises, and
// finishes the batch first: under either guarantee nothing is lost across
// such stops (at_most_once commits offsets before it processes, so a stop
// that dropped the open batch's outputs would lose them).
func TestPlainWorkerStopsMidBatch(t *testing.T) {
	for _, g := range []txn.Guarantee{txn.AtLeastOnce, txn.AtMostOnce} {
		t.Run(g.String(), func(t *testing.T) {
			c := newCluster(t, 4, "in", "out")
			topo, err := passthrough.Build("stop", "in", "out")
			require.NoError(t, err)
			cfg := txn.Config{Brokers: c.brokers, Instance: "w1", Guarantee: g,
				SessionTimeout: 3 * time.Second, CommitInterval: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			feed := startFeeder(t, c.brokers, "in", 0, math.MaxInt64, 100, 10*time.Millisecond)
			for range 3 {
				reg := prometheus.NewRegistry()
				round := cfg
				round.Registerer = reg
				w, err := txn.NewWorker(topo, round)
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- w.Run(ctx) }()
				// The first records processed open a batch that stays open
				// for the commit interval: stop it then.
				require.Eventually(t, func() bool { return processed(reg) > 0 }, 30*time.Second, time.Millisecond)
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(10 * time.Second):
					require.FailNow(t, "Run did not return within 10s after its context was cancelled in the middle of a batch")
				}
			}
			ws := c.workers(topo, cfg)
			ws.start("w1")
			rep := verifyOutput(t, c.brokers, feed.stop(), time.Minute)
			t.Logf("after 3 stops mid-batch: %s", rep)
			require.Zero(t, rep.NumMissing, "%s", rep)
			if g == txn.AtMostOnce {
				require.Zero(t, rep.Duplicates, "%s", rep)
			}
			ws.stopAll()
			ws.requireNoErrors()
		})
	}
}

// processed returns the worker's sluice_records_processed_total (0 when
// the registry cannot be read).
func processed(reg *prometheus.Registry) float64 {
	return counterValue(reg, "sluice_records_processed_total")
}

// readAll reads topic, which no one writes anymore, with read_committed
// from the start (txntest.ReadCommitted): up to its read_committed end,
// and on until it has read something (for at most 30s) and a whole second
// passes with nothing new.
func readAll(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	err := txntest.ReadCommitted(ctx, brokers, topic, func(r *kgo.Record) { recs = append(recs, r) },
		func() bool { return len(recs) > 0 })
	require.NoError(t, err)
	return recs
}

// tally reports on the sequence numbers [0, n) among recs, like
// txntest.Verify.
func tally(recs []*kgo.Record, n int64) txntest.Report {
	seen := make([]int, n)
	rep := txntest.Report{Records: int64(len(recs))}
	for _, r := range recs {
		s, err := txntest.ParseSeq(r.Value)
		if err != nil || s < 0 || s >= n {
			rep.Foreign++
			continue
		}
		if seen[s] > 0 {
			rep.Duplicates++
		} else {
			rep.Distinct++
		}
		seen[s]++
	}
	for i, c := range seen {
		if c == 0 {
			rep.NumMissing++
			if len(rep.Missing) < 20 {
				rep.Missing = append(rep.Missing, int64(i))
			}
		}
	}
	return rep
}

// seq is a decoded sequence value (txntest.SeqValue) and the size it came
// in, so that it encodes back to the same bytes.
type seq struct {
	n    int64
	size int
}

var seqSerde = serde.Func("seq",
	func(s seq) ([]byte, error) { return txntest.SeqValue(s.n, s.size), nil },
	func(b []byte) (seq, error) {
		n, err := txntest.ParseSeq(b)
		return seq{n: n, size: len(b)}, err
	})

// seqTopology copies "in" to "out", decoding and re-encoding every value
// as a sequence value; the error policy is the default, the DLQ.
func seqTopology(t *testing.T, app string) topology.Topology {
	t.Helper()
	b := stream.NewBuilder(app)
	stream.From(b, "in", serde.Bytes, seqSerde).To("out", serde.Bytes, seqSerde)
	topo, err := b.Build()
	require.NoError(t, err)
	return topo
}

// runSeqWorker runs one worker of seqTopology on c and returns its logs.
func runSeqWorker(c *cluster, app string) (*workers, *child.Lines) {
	logs := child.NewLines()
	ws := c.workers(seqTopology(c.t, app), txn.Config{
		SessionTimeout: 3 * time.Second, CommitInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ws.start("w1")
	return ws, logs
}

// produceOne produces r synchronously and returns it with its partition
// and offset filled in.
func produceOne(t *testing.T, brokers []string, r *kgo.Record) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := cl.ProduceSync(ctx, r).First()
	require.NoError(t, err)
	return got
}

// requireDeadLetter requires that the DLQ of app holds exactly the record
// in, unchanged, with the sluice.* headers naming where it came from.
func requireDeadLetter(t *testing.T, brokers []string, app string, in *kgo.Record, errContains string) {
	t.Helper()
	dlq := readAll(t, brokers, app+"-dlq")
	require.Len(t, dlq, 1, "records in the DLQ")
	got := dlq[0]
	require.Equal(t, in.Key, got.Key)
	require.Equal(t, in.Value, got.Value)
	headers := map[string]string{}
	for _, h := range got.Headers {
		headers[h.Key] = string(h.Value)
	}
	for _, h := range in.Headers {
		require.Equal(t, string(h.Value), headers[h.Key], "the input's own header %s", h.Key)
	}
	require.Contains(t, headers[stream.HeaderError], errContains)
	require.Equal(t, in.Topic, headers[stream.HeaderTopic])
	require.Equal(t, strconv.Itoa(int(in.Partition)), headers[stream.HeaderPartition])
	require.Equal(t, strconv.FormatInt(in.Offset, 10), headers[stream.HeaderOffset])
	t.Logf("DLQ record headers: %v", headers)
}

// A poison-pill record lands in the DLQ with its headers, the worker goes
// on, nothing else is lost.
func TestPoisonPillGoesToDLQ(t *testing.T) {
	const n = 2000
	c := newCluster(t, 4, "in", "out")
	ws, _ := runSeqWorker(c, "poison")
	ctx := c.ctx(time.Minute)
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n/2, 1000, 100))
	pill := produceOne(t, c.brokers, &kgo.Record{Topic: "in", Key: []byte("k7"), Value: []byte("poison pill: not a sequence number"),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}})
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", n/2, n, 1000, 100))

	// The pill is not a sequence value: in the output it would count as
	// foreign.
	rep := verifyOutput(t, c.brokers, n, time.Minute)
	require.True(t, rep.Clean(), "%s", rep)
	requireDeadLetter(t, c.brokers, "poison", pill, "seq decode")
	ws.stopAll()
	ws.requireNoErrors()
}

// An output larger than the topic's max.message.bytes is routed to the DLQ
// and the transaction still commits the rest (no abort loop).
func TestOversizedOutputGoesToDLQ(t *testing.T) {
	const n = 2000
	c := newCluster(t, 4, "in")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	require.NoError(t, err)
	defer cl.Close()
	ctx := c.ctx(time.Minute)
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 4, -1, map[string]*string{"max.message.bytes": kadm.StringPtr("2000")}, "out")
	require.NoError(t, err)
	require.NoError(t, resp.Err)
	ws, logs := runSeqWorker(c, "oversized")

	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", 0, n/2, 1000, 100))
	// Sequence number n is outside the verified range: in the output it
	// would count as foreign.
	big := produceOne(t, c.brokers, &kgo.Record{Topic: "in", Key: []byte("k7"), Value: txntest.SeqValue(n, 3000)})
	require.NoError(t, txntest.Produce(ctx, c.brokers, "in", n/2, n, 1000, 100))

	// Without an abort loop the output is complete in seconds.
	rep := verifyOutput(t, c.brokers, n, 20*time.Second)
	require.True(t, rep.Clean(), "%s\nworker warnings:\n%s", rep, logs.Tail(5, func(l string) bool { return strings.Contains(l, "level=WARN") }))
	requireDeadLetter(t, c.brokers, "oversized", big, "too large")
	_, aborted := logs.Find(time.Time{}, "produce failed", msgUnknown)
	require.False(t, aborted, "a transaction was aborted")
	ws.stopAll()
	ws.requireNoErrors()
}

// A missing source topic makes Run return an error naming the topic.
func TestMissingSourceTopic(t *testing.T) {
	c := newCluster(t, 1, "out")
	topo, err := passthrough.Build("missing", "absent", "out")
	require.NoError(t, err)
	w, err := txn.NewWorker(topo, txn.Config{Brokers: c.brokers, Instance: "w1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx := c.ctx(30 * time.Second)
	err = w.Run(ctx)
	require.NoError(t, ctx.Err(), "Run waited instead of failing")
	require.ErrorContains(t, err, `source topic "absent" does not exist`)
}
