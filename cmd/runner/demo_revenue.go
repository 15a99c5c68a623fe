package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/examples/revenue"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/sluicehq/sluice/window"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The revenue demo's input: demoCustomers customers, orders keyed by
// customer_id (so that each customer's orders reach the app, and its
// repartition topic, in the order they were produced), one every 10 ms of
// event time from revenueStart. Every 13th order is 5 s early (out of
// order, within the 10 s grace), every 101st is 2 minutes early (late:
// dropped and counted), every 97th is malformed (DLQ).
var revenueStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	revenueWindow     = time.Minute
	revenueGrace      = 10 * time.Second
	revenuePartitions = 8
)

// revenueOrder is order seq of the demo: its key, value and timestamp.
func revenueOrder(seq int64) (key, value []byte, ts time.Time) {
	customer := fmt.Sprintf("c%d", seq%demoCustomers)
	ts = revenueStart.Add(time.Duration(seq) * 10 * time.Millisecond)
	switch {
	case seq%101 == 100:
		ts = ts.Add(-2 * time.Minute)
	case seq%13 == 12:
		ts = ts.Add(-5 * time.Second)
	}
	value = fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"%s","amount_cents":%d,"seq":%d}`, seq, customer, seq%1000, seq)
	if isMalformed(seq) {
		value = fmt.Appendf(nil, `{"order_id":"o%d", broken seq=%d`, seq, seq)
	}
	return []byte(customer), value, ts
}

// expectedRevenue recomputes the app's output for orders [0, n) and the
// closing orders after them: each partition's stream time is the largest
// timestamp it has seen; an order is late when its window's end plus the
// grace is at or before it; a window is emitted once stream time reaches
// its end plus the grace. It returns the closed windows' totals by
// "customer window_start", and how many orders were late.
func expectedRevenue(n int64) (map[string]revenue.Totals, int64) {
	part := kgo.StickyKeyPartitioner(nil).ForTopic("orders")
	partitionOf := func(key []byte) int { return part.Partition(&kgo.Record{Key: key}, revenuePartitions) }
	type open struct {
		totals revenue.Totals
		closes time.Time
	}
	streamTime := make([]time.Time, revenuePartitions)
	windows := map[string]*open{}
	var late int64
	add := func(key []byte, ts time.Time, cents int64) {
		p := partitionOf(key)
		if ts.After(streamTime[p]) {
			streamTime[p] = ts
		}
		w := window.Tumbling{Size: revenueWindow}.For(ts)
		closes := w.End.Add(revenueGrace)
		if !closes.After(streamTime[p]) {
			late++
			return
		}
		k := string(key) + " " + w.Start.UTC().Format(revenue.TimeFormat)
		if windows[k] == nil {
			windows[k] = &open{closes: closes}
		}
		windows[k].totals.Orders++
		windows[k].totals.RevenueCents += cents
	}
	for seq := range n {
		if isMalformed(seq) {
			continue
		}
		key, _, ts := revenueOrder(seq)
		add(key, ts, seq%1000)
	}
	for _, c := range revenueClosers(n) {
		add(c.Key, c.Timestamp, 0)
	}
	closed := map[string]revenue.Totals{}
	for k, w := range windows {
		customer, _, _ := strings.Cut(k, " ")
		if !w.closes.After(streamTime[partitionOf([]byte(customer))]) {
			closed[k] = w.totals
		}
	}
	return closed, late
}

// revenueClosers are the orders that end the demo: one per customer, an
// hour after the last order, so that every earlier window closes.
func revenueClosers(n int64) []*kgo.Record {
	var rs []*kgo.Record
	ts := revenueStart.Add(time.Duration(n)*10*time.Millisecond + time.Hour)
	for c := range int64(demoCustomers) {
		customer := fmt.Sprintf("c%d", c)
		rs = append(rs, &kgo.Record{Topic: "orders", Key: []byte(customer), Timestamp: ts,
			Value: fmt.Appendf(nil, `{"order_id":"closer-%d","customer_id":"%s","amount_cents":0}`, c, customer)})
	}
	return rs
}

// demoRevenue runs the revenue app like demoPassthrough: n orders, one
// worker SIGKILLed and restarted halfway, then the closing orders; every
// closed (customer, window) must come out exactly once with the totals of
// its on-time orders, every malformed order in the DLQ.
func demoRevenue(ctx context.Context, stdout, stderr io.Writer, n int64, nworkers int) error {
	p := newDemoProgress(stderr, "revenue", "orders", n)
	rig, err := startDemo(ctx, p, []string{"orders", "revenue-per-minute"}, revenuePartitions, nworkers,
		"revenue", "--window", revenueWindow.String(), "--grace", revenueGrace.String())
	if err != nil {
		return err
	}
	defer rig.close()
	brokers, ws, cl := rig.brokers, rig.ws, rig.cl
	start := time.Now()
	acked := func(_ *kgo.Record, err error) {
		if err == nil {
			p.acked()
		}
	}
	err = rig.feed(ctx, n, func(from, to int64) error {
		for seq := from; seq < to; seq++ {
			key, value, ts := revenueOrder(seq)
			cl.Produce(ctx, &kgo.Record{Topic: "orders", Key: key, Value: value, Timestamp: ts}, acked)
		}
		return cl.Flush(ctx)
	})
	if err != nil {
		return err
	}
	p.say("producing an order per customer an hour later, to close every window")
	for _, r := range revenueClosers(n) {
		cl.Produce(ctx, r, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}

	want, late := expectedRevenue(n)
	var malformed int64
	for seq := range n {
		if isMalformed(seq) {
			malformed++
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p.say("reading revenue-per-minute and the DLQ with read_committed to verify them")
	got, err := readRevenue(vctx, brokers, int64(len(want)))
	if err != nil {
		return err
	}
	dlq, err := readDLQ(vctx, brokers, "revenue", malformed)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := ws.failed(); err != nil {
		return err
	}
	p.finish()
	var dups, missing, wrong, unexpected, dlqWrong int64
	var firstWrong string
	for k, totals := range want {
		switch rs := got[k]; {
		case len(rs) == 0:
			missing++
		default:
			dups += int64(len(rs) - 1)
			if rs[0] != totals {
				wrong++
				if firstWrong == "" {
					firstWrong = fmt.Sprintf(" (first: %s: %+v, want %+v)", k, rs[0], totals)
				}
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			unexpected++
		}
	}
	for seq := range n {
		if isMalformed(seq) && dlq[seq] != 1 {
			dlqWrong++
		}
	}
	fmt.Fprintf(stdout, `demo report (revenue, %d workers, 1 SIGKILL + restart)
  orders in:        %d (%d out of order within the grace; %d late; %d malformed)
  windows closed:   %d (customer, window) pairs
  records out:      %d
  duplicates:       %d
  missing:          %d
  wrong totals:     %d%s
  unexpected:       %d (windows not closed, or never sent)
  DLQ'd:            %d (%d not as expected)
  throughput:       %.0f orders/s end to end (%.1fs)
`, nworkers, n, n/13, late, malformed, len(want), countLists(got), dups, missing, wrong, firstWrong, unexpected, countAll(dlq), dlqWrong, float64(n)/elapsed.Seconds(), elapsed.Seconds())
	if dups+missing+wrong+unexpected+dlqWrong > 0 {
		return fmt.Errorf("runner: demo: revenue output is not one exact record per closed window")
	}
	fmt.Fprintln(stdout, "demo: clean: every closed (customer, window) exactly once with its on-time totals; late orders dropped; every malformed order in the DLQ")
	return nil
}

func countLists(m map[string][]revenue.Totals) int64 {
	var n int64
	for _, l := range m {
		n += int64(len(l))
	}
	return n
}

// readRevenue reads revenue-per-minute with read_committed, with large and
// with small fetches (txntest.Readers), until want records were read and it
// has been quiet for a second, and returns every record's totals by
// "customer window_start", in order.
func readRevenue(ctx context.Context, brokers []string, want int64) (map[string][]revenue.Totals, error) {
	read := func(lim txntest.Limits) (map[string][]revenue.Totals, error) {
		got := map[string][]revenue.Totals{}
		var read int64
		err := txntest.ReadCommittedWith(ctx, brokers, "revenue-per-minute", lim, func(r *kgo.Record) {
			read++
			var res revenue.Result
			k := "undecodable " + strconv.FormatInt(read, 10)
			if json.Unmarshal(r.Value, &res) == nil && string(r.Key) == res.CustomerID {
				k = res.CustomerID + " " + res.WindowStart
			}
			got[k] = append(got[k], res.Totals)
		}, func() bool { return read >= want })
		return got, err
	}
	diff := func(a, b map[string][]revenue.Totals) string {
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
				return fmt.Sprintf("%s: %v vs %v", k, a[k], b[k])
			}
		}
		if len(a) != len(b) {
			return fmt.Sprintf("%d windows vs %d", len(a), len(b))
		}
		return ""
	}
	got, err := txntest.ReadEach(read, diff)
	if err != nil {
		return nil, err
	}
	return got[0], nil
}
