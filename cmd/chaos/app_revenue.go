package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The revenue app's topics, windows and customers under chaos.
const (
	revenueIn          = "rev-orders"
	revenueOut         = "revenue-per-minute"
	revenuePartitions  = 8
	revenueWindowSize  = time.Minute
	revenueGracePeriod = 10 * time.Second
	revenueCustomers   = 200
)

// revenueApp is the revenue example app under chaos: orders per customer
// and tumbling minute of event time, with a grace of 10 s. Its input is
// that of cmd/runner's revenue demo: orders keyed by customer_id (c<seq%200>),
// order seq stamped start + seq*10ms, every 13th 5 s early (out of order,
// within the grace), every 101st 2 minutes early (late: dropped), every
// 97th malformed; then one closer per customer an hour later.
type revenueApp struct {
	// start is the event time of order 0. It is fixed when the app is
	// made, a day before the wall clock: the embedded broker (kfake)
	// applies the 7-day time retention to every topic, compacted
	// changelogs included, on its hourly cleaner tick, so event times
	// much older than the run (the demo's 2026-01-01) could have the
	// input, the window store's changelog and the output deleted under a
	// run that lasts over an hour.
	start time.Time
}

// newRevenue returns the revenue app under chaos.
func newRevenue() *revenueApp {
	return &revenueApp{start: time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)}
}

// name implements app.
func (*revenueApp) name() string { return "revenue" }

// topics implements app: rev-orders and revenue-per-minute, 8 partitions
// each.
func (*revenueApp) topics() []topicSpec {
	return []topicSpec{{name: revenueIn, partitions: revenuePartitions}, {name: revenueOut, partitions: revenuePartitions}}
}

// args implements app.
func (a *revenueApp) args() []string {
	return []string{a.name(), "--orders", revenueIn, "--window", revenueWindowSize.String(), "--grace", revenueGracePeriod.String()}
}

// setup implements app: revenue needs nothing in place.
func (*revenueApp) setup(context.Context, *kgo.Client) error { return nil }

// record implements app: order o<seq> of customer c<seq%200>, keyed by
// the customer_id, amount seq%1000 cents, stamped start + seq*10ms, every
// 101st 2 minutes early, every other 13th 5 s early; every 97th
// malformed.
func (a *revenueApp) record(seq int64) *kgo.Record {
	customer := fmt.Sprintf("c%d", seq%revenueCustomers)
	ts := a.start.Add(time.Duration(seq) * 10 * time.Millisecond)
	switch {
	case seq%101 == 100:
		ts = ts.Add(-2 * time.Minute)
	case seq%13 == 12:
		ts = ts.Add(-5 * time.Second)
	}
	v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"%s","amount_cents":%d,"seq":%d}`, seq, customer, seq%1000, seq)
	if malformedSeq(seq) {
		v = brokenJSON(fmt.Sprintf(`{"order_id":"o%d"`, seq), seq)
	}
	return &kgo.Record{Topic: revenueIn, Key: []byte(customer), Value: v, Timestamp: ts}
}

// finish implements app: one closer order per customer (amount 0), an
// hour of event time after order fed-1, so that every earlier window
// closes in every partition.
func (a *revenueApp) finish(fed int64) []*kgo.Record {
	ts := a.start.Add(time.Duration(fed)*10*time.Millisecond + time.Hour)
	rs := make([]*kgo.Record, 0, revenueCustomers)
	for c := range int64(revenueCustomers) {
		customer := fmt.Sprintf("c%d", c)
		rs = append(rs, &kgo.Record{Topic: revenueIn, Key: []byte(customer), Timestamp: ts,
			Value: fmt.Appendf(nil, `{"order_id":"closer-%d","customer_id":"%s","amount_cents":0}`, c, customer)})
	}
	return rs
}

// outputs implements app.
func (a *revenueApp) outputs() []string { return []string{revenueOut, topology.DLQTopic(a.name())} }

// revenueWindowKey names one (customer, window) by the window's start as
// the output writes it.
type revenueWindowKey struct{ customer, start string }

// revenueOpen is a (customer, window) of the recomputation: its totals,
// when it closes, and the task (input partition) whose stream time closes
// it.
type revenueOpen struct {
	result revenue.Result
	closes time.Time
	task   int32
	closed bool // by its task's stream time at the end
}

// verify implements app. It recomputes the output from rev-orders read
// back: the valid orders (enrich.OrderSerde decides, as in the app) of
// each input partition, in offset order, are the records of one task
// (the app re-keys by customer_id with the producer's partitioner and
// the same partition count, so input partition p feeds its repartition
// partition p in order; verify fails when an order's customer_id does
// not hash to its partition). Stream time is the largest timestamp a task
// has seen, the order's own included; an order is late, and dropped, when
// its window's end plus the grace is at or before it; a window is closed
// when its task's stream time at the end reaches its end plus the grace.
// The output must hold exactly one record per closed (customer, window),
// keyed by the customer, its value CONTRACT.md's with the recomputed
// orders and revenue_cents, and nothing else; every malformed order must
// be in the DLQ (checkDLQ).
func (a *revenueApp) verify(ctx context.Context, brokers []string) (appReport, error) {
	rep := appReport{app: a.name(), counts: map[string]int64{}}
	in, err := readInput(ctx, brokers, revenueIn)
	if err != nil {
		return rep, err
	}
	rep.input = int64(len(in))
	windows, malformed, _, err := a.recompute(in)
	if err != nil {
		return rep, err
	}
	closed := map[revenueWindowKey]*revenueOpen{}
	want := map[revenueWindowKey]int{}
	for k, w := range windows {
		if w.closed {
			closed[k], want[k] = w, 1
		}
	}
	rep.expected = int64(len(want))

	out, err := readOutput(ctx, brokers, revenueOut)
	if err != nil {
		return rep, err
	}
	rep.counts[revenueOut] = int64(len(out))
	got := map[revenueWindowKey]int{}
	for _, r := range out {
		var res revenue.Result
		dec := json.NewDecoder(bytes.NewReader(r.Value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil || string(r.Key) != res.CustomerID {
			rep.mismatches++
			rep.note("%s[%d]@%d: a record that is no window result of its key %q: %q", revenueOut, r.Partition, r.Offset, r.Key, r.Value)
			continue
		}
		k := revenueWindowKey{res.CustomerID, res.WindowStart}
		w, ok := closed[k]
		switch {
		case !ok:
			rep.mismatches++
			rep.note("%s[%d]@%d: %s %s is no closed window: %s", revenueOut, r.Partition, r.Offset, k.customer, k.start, r.Value)
		case res != w.result:
			rep.mismatches++
			rep.note("%s[%d]@%d: %s %s: %+v, want %+v", revenueOut, r.Partition, r.Offset, k.customer, k.start, res, w.result)
		default:
			got[k]++
		}
	}
	tallyWindows(&rep, want, got)
	if err := checkDLQ(ctx, brokers, &rep, malformed); err != nil {
		return rep, err
	}
	if err := checkRevenueStore(ctx, brokers, &rep, windows); err != nil {
		return rep, err
	}
	return rep, nil
}

// revenueStore is the revenue app's window store (examples/revenue).
const revenueStore = "revenue"

// checkRevenueStore checks the window store, as its changelog restores it,
// against the recomputed windows: the last aggregate written for each
// window is its recomputed totals, and the windows left (tombstones
// deleted the closed ones) are exactly those still open. A changelog key
// is the customer's bytes, then the window's start and end in ms (sign bit
// flipped); a value the entry's expiry in ms, then the JSON totals.
func checkRevenueStore(ctx context.Context, brokers []string, rep *appReport, windows map[revenueWindowKey]*revenueOpen) error {
	topic := topology.ChangelogTopic(rep.app, revenueStore)
	log, err := readOutput(ctx, brokers, topic)
	if err != nil {
		return err
	}
	rep.counts[topic] = int64(len(log))
	last := map[revenueWindowKey]revenue.Totals{}
	live := map[revenueWindowKey]bool{}
	for _, r := range log { // each key's records are in one partition, in order
		if len(r.Key) < 16 || r.Value != nil && len(r.Value) < 8 {
			rep.mismatches++
			rep.note("%s[%d]@%d: a record that is no window entry: %q=%q", topic, r.Partition, r.Offset, r.Key, r.Value)
			continue
		}
		n := len(r.Key) - 16
		start := time.UnixMilli(int64(binary.BigEndian.Uint64(r.Key[n:]) ^ 1<<63)).UTC()
		k := revenueWindowKey{string(r.Key[:n]), start.Format(revenue.TimeFormat)}
		if r.Value == nil {
			delete(live, k)
			continue
		}
		var tot revenue.Totals
		if err := json.Unmarshal(r.Value[8:], &tot); err != nil {
			rep.mismatches++
			rep.note("%s[%d]@%d: %s %s: aggregate %q: %v", topic, r.Partition, r.Offset, k.customer, k.start, r.Value[8:], err)
			continue
		}
		last[k], live[k] = tot, true
	}
	for k, w := range windows {
		want := revenue.Totals{Orders: w.result.Orders, RevenueCents: w.result.RevenueCents}
		switch got, ok := last[k]; {
		case !ok:
			rep.lost++
			rep.note("%s: %s %s was never in the store", topic, k.customer, k.start)
		case got != want:
			rep.mismatches++
			rep.note("%s: %s %s: the store's last aggregate %+v, want %+v", topic, k.customer, k.start, got, want)
		}
		if live[k] == w.closed {
			rep.mismatches++
			rep.note("%s: %s %s: in the store %v, closed %v", topic, k.customer, k.start, live[k], w.closed)
		}
	}
	for k := range last {
		if windows[k] == nil {
			rep.mismatches++
			rep.note("%s: %s %s: a window with no on-time order", topic, k.customer, k.start)
		}
	}
	return nil
}

// recompute returns what the app must make of the input in: every
// window's result (closed or still open), the seqs of the malformed
// orders, and how many valid orders are late.
func (a *revenueApp) recompute(in []*kgo.Record) (windows map[revenueWindowKey]*revenueOpen, malformed map[int64]bool, late int, err error) {
	partitioner := kgo.StickyKeyPartitioner(nil).ForTopic(revenueIn)
	tumbling := window.Tumbling{Size: revenueWindowSize, Grace: revenueGracePeriod}
	streamTime := map[int32]time.Time{}
	windows = map[revenueWindowKey]*revenueOpen{}
	malformed = map[int64]bool{}
	parts := inPartitionOrder(in)
	for _, p := range partitionsInOrder(parts) {
		for _, r := range parts[p] {
			o, err := enrich.OrderSerde.Decode(r.Value)
			if err != nil {
				seq, ok := seqOf(r.Value)
				if !ok {
					return nil, nil, 0, fmt.Errorf("chaos: %s[%d]@%d: an input record the feeder did not write: %q", revenueIn, r.Partition, r.Offset, r.Value)
				}
				malformed[seq] = true
				continue
			}
			var customer string
			var cents int64
			_ = json.Unmarshal(o["customer_id"], &customer) // validated by OrderSerde
			_ = json.Unmarshal(o["amount_cents"], &cents)   // validated by OrderSerde
			task := int32(partitioner.Partition(&kgo.Record{Key: []byte(customer)}, revenuePartitions))
			if task != r.Partition {
				return nil, nil, 0, fmt.Errorf("chaos: %s[%d]@%d: customer %q hashes to partition %d: the recomputation's assumption that input partition p feeds task p does not hold", revenueIn, r.Partition, r.Offset, customer, task)
			}
			if r.Timestamp.After(streamTime[task]) {
				streamTime[task] = r.Timestamp
			}
			w := tumbling.For(r.Timestamp)
			closes := window.ClosesAt(tumbling, w)
			if !closes.After(streamTime[task]) {
				late++ // dropped
				continue
			}
			k := revenueWindowKey{customer, w.Start.UTC().Format(revenue.TimeFormat)}
			open := windows[k]
			if open == nil {
				open = &revenueOpen{closes: closes, task: task, result: revenue.Result{CustomerID: customer,
					WindowStart: k.start, WindowEnd: w.End.UTC().Format(revenue.TimeFormat)}}
				windows[k] = open
			}
			open.result.Orders++
			open.result.RevenueCents += cents
		}
	}
	for _, w := range windows {
		w.closed = !w.closes.After(streamTime[w.task])
	}
	return windows, malformed, late, nil
}

// tallyWindows is tally for (customer, window) keys, which it orders by
// customer and window start for its examples.
func tallyWindows(rep *appReport, want, got map[revenueWindowKey]int) {
	flat := func(m map[revenueWindowKey]int) map[string]int {
		f := make(map[string]int, len(m))
		for k, n := range m {
			f[k.customer+" "+k.start] = n
		}
		return f
	}
	tally(rep, revenueOut, flat(want), flat(got))
}
