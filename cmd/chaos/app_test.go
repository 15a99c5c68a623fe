package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples"
	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/txn"
	"github.com/sluicehq/sluice/txn/broker"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
)

// appTestRecords is how many seqs each app test feeds.
const appTestRecords = 3000

// appTestRig is one app under test: an embedded broker with the app's
// topics, a client, and one worker of the app running in-process.
type appTestRig struct {
	t       *testing.T
	a       app
	brokers []string
	cl      *kgo.Client
	// done receives the worker's Run result; stop cancels it and returns
	// that result.
	done chan error
	stop func() error
}

// startAppTestRig starts a broker, creates a's topics, runs a's setup and
// starts one worker of a, built as `runner run` builds it from a.args().
func startAppTestRig(t *testing.T, a app) *appTestRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	rig := &appTestRig{t: t, a: a, brokers: []string{addr}}
	rig.cl, err = kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(rig.cl.Close)
	adm := kadm.NewClient(rig.cl)
	for _, ts := range a.topics() {
		_, err := adm.CreateTopic(ctx, ts.partitions, -1, ts.configs, ts.name)
		require.NoError(t, err, "create %s", ts.name)
	}
	require.NoError(t, a.setup(ctx, rig.cl))

	spec, ok := examples.Lookup(a.name())
	require.True(t, ok, "no example app %q", a.name())
	args := a.args()
	require.Equal(t, a.name(), args[0], "args must start with the app's name")
	fs := flag.NewFlagSet(a.name(), flag.ContinueOnError)
	build := spec.Flags(fs)
	require.NoError(t, fs.Parse(args[1:]))
	require.Zero(t, fs.NArg(), "unparsed args %q", fs.Args())
	topo, err := build(a.name())
	require.NoError(t, err)
	log := &txntest.SyncBuffer{}
	w, err := txn.NewWorker(topo, txn.Config{
		Brokers:        rig.brokers,
		Instance:       "w1",
		StateDir:       t.TempDir(),
		SessionTimeout: 3 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	runCtx, stopRun := context.WithCancel(context.Background())
	rig.done = make(chan error, 1)
	go func() { rig.done <- w.Run(runCtx) }()
	rig.stop = sync.OnceValue(func() error {
		stopRun()
		return <-rig.done
	})
	t.Cleanup(func() {
		if err := rig.stop(); err != nil {
			t.Errorf("worker: %v", err)
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", log)
		}
	})
	return rig
}

// feed writes records [0, n) of the app, then its closing records, and
// waits until all are acknowledged.
func (r *appTestRig) feed(n int64) {
	r.t.Helper()
	var rs []*kgo.Record
	for seq := range n {
		if rec := r.a.record(seq); rec != nil {
			rs = append(rs, rec)
		}
	}
	rs = append(rs, r.a.finish(n)...)
	r.produce(rs...)
}

// produce writes rs and waits until they are acknowledged.
func (r *appTestRig) produce(rs ...*kgo.Record) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(r.t, produceAll(ctx, r.cl, rs))
}

// waitConsumed waits until the app's group has committed the end of
// every partition of the app's input topics and has consumed everything
// of every other topic it commits (its repartition topics), up to their
// transaction markers: everything fed is processed.
func (r *appTestRig) waitConsumed() {
	r.t.Helper()
	adm := kadm.NewClient(r.cl)
	deadline := time.Now().Add(90 * time.Second)
	left := "not asked yet"
	for time.Now().Before(deadline) {
		select {
		case err := <-r.done:
			r.done <- err
			r.t.Fatalf("worker exited before it consumed everything: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		left = lagLeft(ctx, r.brokers, adm, r.a)
		cancel()
		if left == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("%s: not consumed within 90s: %s", r.a.name(), left)
}

// verify runs the app's check.
func (r *appTestRig) verify() appReport {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := r.a.verify(ctx, r.brokers)
	require.NoError(r.t, err)
	r.t.Logf("%s counts=%v", rep, rep.counts)
	return rep
}

// requireExercised checks that the input exercised what the app's check
// is about: for dedup repeated ids, for enrich deleted customers and
// updated ones, for revenue late and out-of-order orders.
func (r *appTestRig) requireExercised(rep appReport) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch a := r.a.(type) {
	case *dedupApp:
		require.Less(r.t, rep.counts[dedupOut]+rep.counts[topology.DLQTopic(a.name())], rep.input, "no repeated event ids")
	case *enrichApp:
		out, err := readOutput(ctx, r.brokers, enrichOut)
		require.NoError(r.t, err)
		var nulls, updated int
		for _, rec := range out {
			var v struct {
				Customer *enrichCustomerValue `json:"customer"`
			}
			require.NoError(r.t, json.Unmarshal(rec.Value, &v))
			switch {
			case v.Customer == nil:
				nulls++
			case *v.Customer.Version > 0:
				updated++
			}
		}
		r.t.Logf("enrich: %d orders of deleted customers, %d of updated ones", nulls, updated)
		require.Positive(r.t, nulls)
		require.Positive(r.t, updated)
	case *revenueApp:
		in, err := readInput(ctx, r.brokers, revenueIn)
		require.NoError(r.t, err)
		_, _, late, err := a.recompute(in)
		require.NoError(r.t, err)
		require.Positive(r.t, late)
	}
}

// extraInput returns input records past the n fed that change what the
// app must output (and, with the worker stopped, never reach it): one
// valid order or event more, or for revenue an order two minutes past
// the closers, which closes the closers' windows of its task.
func extraInput(t *testing.T, a app, n int64) []*kgo.Record {
	switch a := a.(type) {
	case *passthroughApp:
		return []*kgo.Record{a.record(n)}
	case *dedupApp:
		for seq := n; ; seq++ {
			if !malformedSeq(seq) && dedupEventID(seq) == seq {
				return []*kgo.Record{a.record(seq)}
			}
		}
	case *enrichApp:
		for seq := n; ; seq++ {
			if r := a.record(seq); r.Topic == enrichOrders && !malformedSeq(seq) {
				return []*kgo.Record{r}
			}
		}
	case *revenueApp:
		r := a.finish(n)[0]
		r.Timestamp = r.Timestamp.Add(2 * time.Minute)
		return []*kgo.Record{r}
	}
	t.Fatalf("no extra input for %T", a)
	return nil
}

// TestApps runs each app under chaos on an embedded broker with one
// in-process worker and no faults: its check must find the output clean.
// Then, with the worker stopped, it proves the check can fail: a copy of
// an output record written straight to the sink is a duplicate, and an
// input record the app never saw leaves its output lost.
func TestApps(t *testing.T) {
	for _, a := range apps() {
		t.Run(a.name(), func(t *testing.T) {
			t.Parallel()
			rig := startAppTestRig(t, a)
			rig.feed(appTestRecords)
			rig.waitConsumed()
			rep := rig.verify()
			require.True(t, rep.clean(), "%s", rep)
			require.Equal(t, a.name(), rep.app)
			require.Positive(t, rep.input)
			require.Positive(t, rep.expected)
			sink, dlq := a.outputs()[0], a.outputs()[1]
			require.Equal(t, topology.DLQTopic(a.name()), dlq)
			require.Contains(t, rep.counts, sink)
			require.Contains(t, rep.counts, dlq)
			require.Positive(t, rep.counts[sink])
			if a.name() == "passthrough" {
				require.Zero(t, rep.counts[dlq])
			} else {
				require.Positive(t, rep.counts[dlq], "the input has malformed records")
			}
			rig.requireExercised(rep)
			require.NoError(t, rig.stop())

			// A copy of an output record: a duplicate.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := readOutput(ctx, rig.brokers, sink)
			require.NoError(t, err)
			src := out[len(out)/2]
			rig.produce(&kgo.Record{Topic: sink, Key: src.Key, Value: src.Value, Headers: src.Headers, Timestamp: src.Timestamp})
			rep = rig.verify()
			require.False(t, rep.clean())
			require.EqualValues(t, 1, rep.duplicates, "%s", rep)
			require.Zero(t, rep.lost, "%s", rep)
			require.EqualValues(t, rep.counts[sink], len(out)+1)

			// An input record the app never processed: its output is lost.
			rig.produce(extraInput(t, a, appTestRecords)...)
			rep = rig.verify()
			require.Positive(t, rep.lost, "%s", rep)
		})
	}
}

// TestAppsDetectWrongOutput writes records into each app's sink that the
// app could not have written: a changed value of a real output record,
// and one that is no output at all; each must be a mismatch.
func TestAppsDetectWrongOutput(t *testing.T) {
	for _, a := range apps() {
		t.Run(a.name(), func(t *testing.T) {
			t.Parallel()
			rig := cleanRig(t, a, 300)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sink := a.outputs()[0]
			out, err := readOutput(ctx, rig.brokers, sink)
			require.NoError(t, err)
			src := out[0]
			changed := bytes.Clone(src.Value)
			i := bytes.IndexAny(changed, "0123456789")
			require.GreaterOrEqual(t, i, 0, "no digit in %q", changed)
			changed[i] = '0' + (changed[i]-'0'+1)%10 // another seq, id, amount or customer
			rig.produce(
				&kgo.Record{Topic: sink, Key: src.Key, Value: changed, Timestamp: src.Timestamp, Headers: src.Headers},
				&kgo.Record{Topic: sink, Key: []byte("stranger"), Value: []byte(`{"hello":"world"}`)},
			)
			rep := rig.verify()
			require.EqualValues(t, 2, rep.mismatches, "%s", rep)
		})
	}
}

// TestAppsDetectDeadLetters checks that a dead letter no input calls for
// is a mismatch, for passthrough (whose DLQ must stay empty) as for the
// apps whose DLQ holds the malformed input.
func TestAppsDetectDeadLetters(t *testing.T) {
	for _, a := range []app{newPassthrough(), newDedup()} {
		t.Run(a.name(), func(t *testing.T) {
			t.Parallel()
			rig := cleanRig(t, a, 300)
			rig.produce(&kgo.Record{Topic: topology.DLQTopic(a.name()), Value: []byte("not malformed seq=5")})
			rep := rig.verify()
			require.EqualValues(t, 1, rep.mismatches, "%s", rep)
		})
	}
}

// TestReadOutputMissingTopic checks what the passthrough check relies on
// when no worker created its DLQ: a topic that does not exist reads as
// empty (txntest.ReadCommittedWith lists no end for it and stops once a
// second passes with nothing), and reading it does not create it.
func TestReadOutputMissingTopic(t *testing.T) {
	cluster, addr, err := broker.Start(broker.Config{})
	require.NoError(t, err)
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := readOutput(ctx, []string{addr}, "no-such-topic")
	require.NoError(t, err)
	require.Empty(t, rs)

	rep := appReport{app: "passthrough"}
	require.NoError(t, checkDLQ(ctx, []string{addr}, &rep, nil))
	require.True(t, rep.clean())
	require.Zero(t, rep.counts[topology.DLQTopic("passthrough")])

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "no-such-topic", topology.DLQTopic("passthrough"))
	require.NoError(t, err)
	for _, td := range topics {
		require.Error(t, td.Err, "reading %s created it", td.Topic)
	}
}

// TestEnrichInput checks the enrich input's customer updates: versions
// rise per customer, deletes are tombstones, and a deleted customer comes
// back at a higher version.
func TestEnrichInput(t *testing.T) {
	a := newEnrich()
	version := map[string]int64{}
	deleted := map[string]bool{}
	var orders, updates, deletes, recreated int
	for seq := range int64(5000) {
		r := a.record(seq)
		switch {
		case r.Topic == enrichOrders:
			orders++
		case r.Value == nil:
			deletes++
			deleted[string(r.Key)] = true
		default:
			updates++
			var c enrichCustomerValue
			require.NoError(t, json.Unmarshal(r.Value, &c))
			require.Equal(t, "customer "+string(r.Key[1:]), c.Name)
			require.Greater(t, *c.Version, version[string(r.Key)], "seq %d", seq)
			version[string(r.Key)] = *c.Version
			if deleted[string(r.Key)] {
				recreated++
				delete(deleted, string(r.Key))
			}
		}
	}
	require.Equal(t, 10, deletes)
	require.Equal(t, 9, recreated) // all but the delete at 4500
	require.Equal(t, 240, updates)
	require.Equal(t, 4750, orders)
}

// TestEnrichDetectsStaleCustomer writes enriched orders the app could not
// have written into orders-enriched: an order repeated with its
// customer's version going back, and one with a null customer that was
// never deleted.
func TestEnrichDetectsStaleCustomer(t *testing.T) {
	a := newEnrich()
	rig := cleanRig(t, a, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := readOutput(ctx, rig.brokers, enrichOut)
	require.NoError(t, err)
	var stale, null *kgo.Record
	for _, r := range out {
		var v map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(r.Value, &v))
		var c *enrichCustomerValue
		require.NoError(t, json.Unmarshal(v["customer"], &c))
		switch {
		case stale == nil && c != nil && *c.Version > 0:
			v["customer"] = fmt.Appendf(nil, `{"name":%q,"version":0}`, c.Name)
			stale = &kgo.Record{Topic: enrichOut, Key: r.Key, Timestamp: r.Timestamp}
			stale.Value, err = json.Marshal(v)
			require.NoError(t, err)
		case null == nil && c != nil && *c.Version == 0 && string(r.Key) == "c150":
			v["customer"] = json.RawMessage("null")
			null = &kgo.Record{Topic: enrichOut, Key: r.Key, Timestamp: r.Timestamp}
			null.Value, err = json.Marshal(v)
			require.NoError(t, err)
		}
	}
	require.NotNil(t, stale, "no order of an updated customer")
	require.NotNil(t, null, "no order of c150 (never updated nor deleted) at version 0")

	rig.produce(stale)
	rep := rig.verify()
	require.EqualValues(t, 1, rep.duplicates, "%s", rep)
	require.EqualValues(t, 1, rep.mismatches, "%s", rep)

	rig.produce(null)
	rep = rig.verify()
	require.EqualValues(t, 2, rep.mismatches, "%s", rep)
}

// cleanRig runs a over n records, requires a clean check and stops the
// worker: the tests that then write what the app could not have written
// start from it.
func cleanRig(t *testing.T, a app, n int64) *appTestRig {
	t.Helper()
	rig := startAppTestRig(t, a)
	rig.feed(n)
	rig.waitConsumed()
	require.True(t, rig.verify().clean())
	require.NoError(t, rig.stop())
	return rig
}

// storeCheckRig runs a over n records, requires a clean check, stops the
// worker, and returns the rig, the records of store's changelog, and a
// client that writes to the partition a record names.
func storeCheckRig(t *testing.T, a app, n int64, store string) (*appTestRig, []*kgo.Record, *kgo.Client) {
	t.Helper()
	rig := cleanRig(t, a, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log, err := readOutput(ctx, rig.brokers, topology.ChangelogTopic(a.name(), store))
	require.NoError(t, err)
	require.NotEmpty(t, log)
	cl, err := kgo.NewClient(kgo.SeedBrokers(rig.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return rig, log, cl
}

// TestDedupStoreCheck checks that the dedup's store check fails when the
// store, as its changelog restores it, lacks an id the input calls for
// (a tombstone for it) or holds one no input has.
func TestDedupStoreCheck(t *testing.T) {
	rig, log, cl := storeCheckRig(t, newDedup(), 300, dedupStore)
	live := log[len(log)-1]
	require.NotNil(t, live.Value)
	_, _, writes, err := state.SegmentedChangelogEntries(live.Key, live.Value)
	require.NoError(t, err)
	require.NotEmpty(t, writes)
	// A pack of another number in the same segment, holding an id no
	// input has.
	foreign := binary.BigEndian.AppendUint64(append([]byte(nil), live.Key[:8]...), 1<<40)
	pack := binary.AppendUvarint(nil, uint64(len("e-never-sent")))
	pack = append(pack, "e-never-sent"...)
	pack = binary.AppendUvarint(pack, uint64(len(writes[0].Value)+1))
	pack = append(pack, writes[0].Value...)
	packed := []kgo.RecordHeader{{Key: state.PackedHeader, Value: []byte("1")}}
	require.NoError(t, produceAll(context.Background(), cl, []*kgo.Record{
		{Topic: live.Topic, Partition: live.Partition, Key: live.Key, Headers: packed}, // a tombstone: the segment is gone
		{Topic: live.Topic, Partition: live.Partition, Key: foreign, Value: pack, Headers: packed},
	}))
	rep := rig.verify()
	require.GreaterOrEqual(t, rep.lost, int64(1), "%s", rep)
	require.EqualValues(t, 1, rep.mismatches, "%s", rep)
}

// TestRevenueStoreCheck checks that the revenue store check fails when
// the window store, as its changelog restores it, lost an open window (a
// tombstone for it) or holds a window with a wrong aggregate.
func TestRevenueStoreCheck(t *testing.T) {
	rig, log, cl := storeCheckRig(t, newRevenue(), 1_000, revenueStore)
	open := log[len(log)-1] // a closer's window: open
	require.NotNil(t, open.Value)
	var closedEntry *kgo.Record
	for _, r := range log {
		if r.Value != nil && r.Partition == open.Partition && !bytes.Equal(r.Key, open.Key) {
			closedEntry = r
			break
		}
	}
	require.NotNil(t, closedEntry)
	wrong := append(append([]byte(nil), closedEntry.Value[:8]...), `{"orders":1,"revenue_cents":-1}`...)
	require.NoError(t, produceAll(context.Background(), cl, []*kgo.Record{
		{Topic: open.Topic, Partition: open.Partition, Key: open.Key},                      // the open window gone
		{Topic: open.Topic, Partition: open.Partition, Key: closedEntry.Key, Value: wrong}, // a closed one back, wrong
	}))
	rep := rig.verify()
	require.EqualValues(t, 3, rep.mismatches, "%s", rep) // gone while open; wrong aggregate; live while closed
}

// TestEnrichCheckOutputOrder checks the enrich check's reading of one
// partition in offset order: an order that saw its customer as null
// before the table read the customer is fine, a later order that sees
// null after one saw a version is a mismatch, and an exact copy of the
// first order, appended after both, is a duplicate and nothing else.
func TestEnrichCheckOutputOrder(t *testing.T) {
	order := func(seq int64) enrich.Order {
		return enrich.Order{"seq": fmt.Appendf(nil, "%d", seq), "customer_id": []byte(`"c1"`)}
	}
	enriched := func(offset, seq int64, customer string) *kgo.Record {
		v := order(seq)
		v["customer"] = json.RawMessage(customer)
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return &kgo.Record{Topic: enrichOut, Key: []byte("c1"), Value: b, Offset: offset}
	}
	sent := map[int64]enrichSent{1: {order(1), "c1"}, 2: {order(2), "c1"}, 3: {order(3), "c1"}}
	v1 := `{"name":"customer 1","version":1}`
	written := map[string]*enrichWritten{"c1": {values: map[string]bool{v1: true}, maxVersion: 1}}
	a := newEnrich()

	rep := appReport{}
	got := a.checkOutput(&rep, []*kgo.Record{enriched(0, 1, "null"), enriched(1, 2, v1), enriched(2, 1, "null")}, sent, written, nil)
	require.Zero(t, rep.mismatches, "%s", rep)
	require.Equal(t, map[int64]int{1: 2, 2: 1}, got)

	rep = appReport{}
	got = a.checkOutput(&rep, []*kgo.Record{enriched(0, 1, "null"), enriched(1, 2, v1), enriched(2, 3, "null")}, sent, written, nil)
	require.EqualValues(t, 1, rep.mismatches, "%s", rep)
	require.Equal(t, map[int64]int{1: 1, 2: 1}, got)
}
