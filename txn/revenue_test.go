package txn_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn/txntest"
)

// The revenue app's windows in the txn tests: one second, with a grace of
// 300 ms.
const (
	revenueWindow = time.Second
	revenueGrace  = 300 * time.Millisecond
)

// revenueTopology is the revenue example app (examples/revenue) with
// revenueWindow and revenueGrace.
func revenueTopology(appID, input, output string) (*stream.Topology, error) {
	return revenue.Build(appID, input, output, revenueWindow, revenueGrace)
}

// inputRecord is one record of a test's input, produced to "in" in the
// order of its slice; its partition is the producer's (murmur2 of the
// key).
type inputRecord struct {
	key, value []byte
	ts         time.Time
}

func (r inputRecord) kgo() *kgo.Record {
	return &kgo.Record{Topic: "in", Key: r.key, Value: r.value, Timestamp: r.ts}
}

var inputPartitioner = kgo.StickyKeyPartitioner(nil).ForTopic("in")

// partition is the partition of "in" that the producer writes r to.
func (r inputRecord) partition() int32 {
	return int32(inputPartitioner.Partition(r.kgo(), fleetPartitions))
}

// produceInput starts a feeder of in, a chunk of 100 records per 20 ms,
// each chunk acknowledged before the next: one producer, so each
// partition gets its records in the order of in.
func produceInput(t *testing.T, brokers []string, in []inputRecord) *feeder {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return startFeederWith(t, 0, int64(len(in)), 100, 20*time.Millisecond, func(ctx context.Context, lo, hi int64) error {
		for _, r := range in[lo:hi] {
			cl.Produce(ctx, r.kgo(), nil)
		}
		return cl.Flush(ctx)
	})
}

// revenueOrders returns n orders of 40 customers, keyed by customer id
// (so that the app's repartition keeps each partition's order), the i-th
// stamped i ms after wcountBase: a quarter of them up to 600 ms early (out
// of order, within the grace or late), one in 50 five seconds early (late
// everywhere, with an amount of a million cents so that counting one
// shows); then one closing order per customer a minute on, two windows
// apart from each other, so that every partition's last records close
// windows, every window of the orders before among them.
func revenueOrders(seed uint64, n int) []inputRecord {
	rng := rand.New(rand.NewPCG(seed, seed))
	const customers = 40
	var in []inputRecord
	add := func(i int, customer string, cents int64, ts time.Time) {
		in = append(in, inputRecord{key: []byte(customer), ts: ts,
			value: fmt.Appendf(nil, `{"order_id":"o%d","customer_id":%q,"amount_cents":%d}`, i, customer, cents)})
	}
	for i := range n {
		ts := wcountBase.Add(time.Duration(i) * time.Millisecond)
		cents := 1 + rng.Int64N(999)
		switch r := rng.IntN(100); {
		case r < 2:
			ts, cents = ts.Add(-5*time.Second), 1_000_000
		case r < 27:
			ts = ts.Add(-time.Duration(rng.IntN(600)) * time.Millisecond)
		}
		add(i, "c"+strconv.Itoa(rng.IntN(customers)), cents, ts)
	}
	closing := wcountBase.Add(time.Duration(n)*time.Millisecond + time.Minute)
	for c := range customers {
		add(n+c, "c"+strconv.Itoa(c), 1, closing.Add(time.Duration(c)*2*revenueWindow))
	}
	return in
}

// windowKey is a key's tumbling window, by its start in ms.
type windowKey struct {
	key   string
	start int64
}

// windowTotals is a window's number of records and sum of amounts.
type windowTotals struct{ n, sum int64 }

// windowsRecomputed is what a tumbling-window aggregation must make of an
// input.
type windowsRecomputed struct {
	emitted map[windowKey]windowTotals // the windows closed, each emitted once
	open    map[windowKey]windowTotals // the windows still open at the end: the store
	late    int                        // records dropped
}

// recomputeWindows recomputes a tumbling-window aggregation of size and
// grace over in, partition by partition in input order, as the docs
// define it (docs/windows.md): a task's stream time is the largest
// timestamp it has seen, this record's included; a window closes (and is
// emitted) when stream time reaches its end plus the grace; a record
// whose window has closed is late. amount gives a record's amount.
func recomputeWindows(in []inputRecord, size, grace time.Duration, amount func(inputRecord) int64) windowsRecomputed {
	res := windowsRecomputed{emitted: map[windowKey]windowTotals{}, open: map[windowKey]windowTotals{}}
	type part struct {
		streamTime int64
		open       map[windowKey]windowTotals
	}
	parts := map[int32]*part{}
	sz, gr := size.Milliseconds(), grace.Milliseconds()
	for _, r := range in {
		p := parts[r.partition()]
		if p == nil {
			p = &part{streamTime: -1 << 63, open: map[windowKey]windowTotals{}}
			parts[r.partition()] = p
		}
		ts := r.ts.UnixMilli()
		p.streamTime = max(p.streamTime, ts)
		for w, tot := range p.open {
			if w.start+sz+gr <= p.streamTime {
				res.emitted[w] = tot
				delete(p.open, w)
			}
		}
		w := windowKey{key: string(r.key), start: ts - ts%sz}
		if w.start+sz+gr <= p.streamTime {
			res.late++
			continue
		}
		tot := p.open[w]
		p.open[w] = windowTotals{n: tot.n + 1, sum: tot.sum + amount(r)}
	}
	for _, p := range parts {
		maps.Copy(res.open, p.open)
	}
	return res
}

// orderCents is an order's amount_cents.
func orderCents(r inputRecord) int64 {
	var o struct {
		Cents int64 `json:"amount_cents"`
	}
	_ = json.Unmarshal(r.value, &o)
	return o.Cents
}

// windowChangelog decodes the records of a window store's changelog
// whose aggregates are JSON revenue.Totals (keys: the key's bytes, then
// the window's start and end in ms, each with the sign bit flipped;
// values: the expiry in ms, then the aggregate), checks that each entry
// expires when its window closes, and returns the last aggregate written
// for every window (tombstones aside) and the live entries (the table).
func windowChangelog(t *testing.T, log txntest.Log, size, grace time.Duration) (last, live map[windowKey]windowTotals) {
	t.Helper()
	last, live = map[windowKey]windowTotals{}, map[windowKey]windowTotals{}
	for _, p := range slices.Sorted(maps.Keys(log)) {
		for _, r := range log[p] {
			require.GreaterOrEqual(t, len(r.Key), 16, "changelog key %q", r.Key)
			n := len(r.Key) - 16
			start := int64(binary.BigEndian.Uint64(r.Key[n:]) ^ 1<<63)
			end := int64(binary.BigEndian.Uint64(r.Key[n+8:]) ^ 1<<63)
			require.Equal(t, size.Milliseconds(), end-start, "window of %q", r.Key)
			w := windowKey{key: string(r.Key[:n]), start: start}
			if r.Tombstone {
				delete(live, w)
				continue
			}
			require.GreaterOrEqual(t, len(r.Value), 8, "changelog value %q", r.Value)
			require.Equal(t, end+grace.Milliseconds(), int64(binary.BigEndian.Uint64(r.Value)), "expiry of %v", w)
			var tot revenue.Totals
			require.NoError(t, json.Unmarshal(r.Value[8:], &tot), "changelog value %q", r.Value)
			last[w] = windowTotals{n: tot.Orders, sum: tot.RevenueCents}
			live[w] = last[w]
		}
	}
	return last, live
}

// readRevenue reads n results from the revenue app's output "out" (with
// large and with small fetches, which must agree) and returns how many
// times each (customer, window) came out, and its totals.
func readRevenue(t *testing.T, brokers []string, n int) (times map[windowKey]int, totals map[windowKey]windowTotals) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	log, err := txntest.ReadLog(ctx, brokers, "out", n)
	require.NoError(t, err)
	times, totals = map[windowKey]int{}, map[windowKey]windowTotals{}
	for _, p := range slices.Sorted(maps.Keys(log)) {
		for _, r := range log[p] {
			var res revenue.Result
			require.NoError(t, json.Unmarshal(r.Value, &res), "out[%d]: %s", p, r)
			start, err := time.Parse(revenue.TimeFormat, res.WindowStart)
			require.NoError(t, err)
			require.Equal(t, res.CustomerID, string(r.Key), "out[%d]: %s", p, r)
			w := windowKey{key: res.CustomerID, start: start.UnixMilli()}
			times[w]++
			totals[w] = windowTotals{n: res.Orders, sum: res.RevenueCents}
		}
	}
	return times, totals
}

// Under repeated SIGKILLs of three workers of the revenue app, with the
// CPU busy and orders arriving all along, out of order and some late,
// every (customer, window) comes out exactly once with the exact count
// and sum of its on-time orders, recomputed from the input order of each
// partition; no late order is counted (each carries a million cents);
// and the window store, read back through its changelog, held exactly
// the recomputed aggregate of every window and holds exactly the windows
// still open.
func TestRevenueExactUnderRepeatedKills(t *testing.T) {
	busyCPU(t)
	f := newStateFleet(t, "revkills")
	f.cfg.topology = "revenue"
	in := revenueOrders(1, 12_000)
	want := recomputeWindows(in, revenueWindow, revenueGrace, orderCents)
	require.Positive(t, want.late)
	w := map[string]*proc{"w1": f.start("w1", nil), "w2": f.start("w2", nil), "w3": f.start("w3", nil)}
	feed := produceInput(t, f.brokers, in)
	f.killInTurn(w, 6, feed)
	feed.wait()

	times, totals := readRevenue(t, f.brokers, len(want.emitted))
	for win, tot := range want.emitted {
		require.Equal(t, 1, times[win], "%v: exactly once", win)
		require.Equal(t, tot, totals[win], "%v: its on-time orders", win)
	}
	require.Len(t, times, len(want.emitted), "no other window")
	t.Logf("%d windows emitted, %d orders late, %d windows open", len(want.emitted), want.late, len(want.open))
	f.stopAll(w["w1"], w["w2"], w["w3"])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// At least a record per order counted.
	log, err := txntest.ReadLog(ctx, f.brokers, "revkills-revenue-changelog", len(in)-want.late)
	require.NoError(t, err)
	last, live := windowChangelog(t, log, revenueWindow, revenueGrace)
	all := maps.Clone(want.emitted)
	maps.Copy(all, want.open)
	require.Equal(t, all, last, "the store's last aggregate of every window")
	require.Equal(t, want.open, live, "the store: the windows still open")
}
