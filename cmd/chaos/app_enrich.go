package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/examples/enrich"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The enrich app's topics under chaos: its defaults.
const (
	enrichOrders    = "orders"
	enrichCustomers = "customers"
	enrichOut       = "orders-enriched"
)

// enrichCustomerCount is how many customers there are: c0 .. c199.
const enrichCustomerCount = 200

// enrichApp is the enrich example app under chaos: orders joined with the
// latest value of their customer. setup writes every customer at version
// 0; the input is then mostly orders (as cmd/runner's enrich demo writes
// them, every 97th malformed), with a customer update every 20th seq, its
// version one more than the customer's last, and a delete (a tombstone)
// every 500th, which a later update re-creates.
type enrichApp struct {
	// versions are the last version written of each customer. record
	// is called from one goroutine, in seq order.
	versions [enrichCustomerCount]int64
}

// newEnrich returns the enrich app under chaos.
func newEnrich() *enrichApp { return &enrichApp{} }

// name implements app.
func (*enrichApp) name() string { return "enrich" }

// topics implements app: orders, customers (compacted) and
// orders-enriched, 8 partitions each (the app joins orders, repartitioned
// by customer_id, with customers: they must be co-partitioned).
func (*enrichApp) topics() []topicSpec {
	compact := "compact"
	return []topicSpec{
		{name: enrichOrders, partitions: 8},
		{name: enrichCustomers, partitions: 8, configs: map[string]*string{"cleanup.policy": &compact}},
		{name: enrichOut, partitions: 8},
	}
}

// args implements app: enrich's defaults are the chaos topics.
func (a *enrichApp) args() []string { return []string{a.name()} }

// enrichCustomerKey returns customer i's key, its customer_id.
func enrichCustomerKey(i int64) []byte { return fmt.Appendf(nil, "c%d", i) }

// customerRecord returns customer i's record at its current version.
func (a *enrichApp) customerRecord(i int64) *kgo.Record {
	return &kgo.Record{Topic: enrichCustomers, Key: enrichCustomerKey(i),
		Value: fmt.Appendf(nil, `{"name":"customer %d","version":%d}`, i, a.versions[i])}
}

// setup implements app: it writes customers c0 .. c199 at version 0 and
// waits until they are acknowledged, so that the workers find them.
func (a *enrichApp) setup(ctx context.Context, cl *kgo.Client) error {
	rs := make([]*kgo.Record, 0, enrichCustomerCount)
	for i := range int64(enrichCustomerCount) {
		rs = append(rs, a.customerRecord(i))
	}
	return produceAll(ctx, cl, rs)
}

// record implements app. Every 500th seq deletes customer
// c<(seq/20+40)%200> (re-created, at a higher version, by its update at
// seq+800, which is no 500th); every other 20th updates customer
// c<(seq/20)%200> to its next version; every other seq is order o<seq> of
// customer c<seq%200>, key x<seq>, every 97th malformed. Timestamps are
// left to the producer.
func (a *enrichApp) record(seq int64) *kgo.Record {
	switch {
	case seq%500 == 0:
		return &kgo.Record{Topic: enrichCustomers, Key: enrichCustomerKey((seq/20 + 40) % enrichCustomerCount)}
	case seq%20 == 0:
		i := (seq / 20) % enrichCustomerCount
		a.versions[i]++
		return a.customerRecord(i)
	}
	v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":%d,"seq":%d}`, seq, seq%enrichCustomerCount, seq%1000, seq)
	if malformedSeq(seq) {
		v = brokenJSON(fmt.Sprintf(`{"order_id":"o%d"`, seq), seq)
	}
	return &kgo.Record{Topic: enrichOrders, Key: fmt.Appendf(nil, "x%d", seq), Value: v}
}

// finish implements app: nothing to close.
func (*enrichApp) finish(int64) []*kgo.Record { return nil }

// outputs implements app.
func (a *enrichApp) outputs() []string { return []string{enrichOut, topology.DLQTopic(a.name())} }

// enrichSent is a valid order of the input read back.
type enrichSent struct {
	order    enrich.Order
	customer string // its customer_id
}

// enrichWritten is what the customers topic read back holds of one
// customer: every value written (compacted JSON), whether it was ever
// deleted, its highest version, and its partition.
type enrichWritten struct {
	values     map[string]bool
	deleted    bool
	maxVersion int64
	partition  int32
}

// enrichCustomerValue is the part of a customer value the check reads.
type enrichCustomerValue struct {
	Name    string `json:"name"`
	Version *int64 `json:"version"`
}

// verify implements app. From the orders and customers read back: every
// valid order (enrich.OrderSerde decides, as in the app) is in
// orders-enriched exactly as often as in orders, keyed by its
// customer_id, its value the order's fields unchanged plus "customer": a
// value written for that customer, or null. Per customer, in output
// order, the customer's version never goes back, across deletes too (a
// re-created customer has a higher version), and null comes after a
// version only for a customer that was deleted at some point. (Before
// the first version the table may not have read the customer yet: a task
// processes its partitions' records as they are fetched, not in
// timestamp order.) Nothing else is in orders-enriched;
// every malformed order is in the DLQ (checkDLQ).
//
// A customer value that is not in the customers read back is accepted
// only when that partition of customers was compacted (its offsets have
// gaps: kfake compacts hourly) and the value is one the input wrote: the
// customer's name at a version no higher than its last.
func (a *enrichApp) verify(ctx context.Context, brokers []string) (appReport, error) {
	rep := appReport{app: a.name(), counts: map[string]int64{}}
	customers, err := readInput(ctx, brokers, enrichCustomers)
	if err != nil {
		return rep, err
	}
	orders, err := readInput(ctx, brokers, enrichOrders)
	if err != nil {
		return rep, err
	}
	rep.input = int64(len(customers) + len(orders))

	written := map[string]*enrichWritten{}
	compacted := map[int32]bool{}
	parts := inPartitionOrder(customers)
	for _, p := range partitionsInOrder(parts) {
		var next int64
		for _, r := range parts[p] {
			if r.Offset != next {
				compacted[p] = true
			}
			next = r.Offset + 1
			w := written[string(r.Key)]
			if w == nil {
				w = &enrichWritten{values: map[string]bool{}, maxVersion: -1, partition: p}
				written[string(r.Key)] = w
			}
			if r.Value == nil {
				w.deleted = true
				continue
			}
			var c enrichCustomerValue
			if json.Unmarshal(r.Value, &c) != nil || c.Version == nil {
				return rep, fmt.Errorf("chaos: %s[%d]@%d: a customer the feeder did not write: %q", enrichCustomers, r.Partition, r.Offset, r.Value)
			}
			w.values[compactJSON(r.Value)] = true
			w.maxVersion = max(w.maxVersion, *c.Version)
		}
	}

	sent := map[int64]enrichSent{}
	want := map[int64]int{}
	malformed := map[int64]bool{}
	for _, r := range orders {
		o, err := enrich.OrderSerde.Decode(r.Value)
		if err != nil {
			seq, ok := seqOf(r.Value)
			if !ok {
				return rep, fmt.Errorf("chaos: %s[%d]@%d: an input record the feeder did not write: %q", enrichOrders, r.Partition, r.Offset, r.Value)
			}
			malformed[seq] = true
			continue
		}
		var seq int64
		var customer string
		if json.Unmarshal(o["seq"], &seq) != nil || json.Unmarshal(o["customer_id"], &customer) != nil {
			return rep, fmt.Errorf("chaos: %s[%d]@%d: an order the feeder did not write: %q", enrichOrders, r.Partition, r.Offset, r.Value)
		}
		sent[seq] = enrichSent{order: o, customer: customer}
		want[seq]++
		rep.expected++
	}

	out, err := readOutput(ctx, brokers, enrichOut)
	if err != nil {
		return rep, err
	}
	rep.counts[enrichOut] = int64(len(out))
	got := a.checkOutput(&rep, out, sent, written, compacted)
	tally(&rep, enrichOut, want, got)
	if err := checkDLQ(ctx, brokers, &rep, malformed); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkOutput checks each record of orders-enriched, partition by
// partition in offset order (checkEnriched, and that no order sees its
// customer go back: to null when it was never deleted, or to an older
// version), and returns how many times each order was delivered.
func (a *enrichApp) checkOutput(rep *appReport, out []*kgo.Record, sent map[int64]enrichSent, written map[string]*enrichWritten, compacted map[int32]bool) map[int64]int {
	got := map[int64]int{}
	// last is the version each customer was last seen at in the output.
	last := map[string]int64{}
	// first is the value each order was first delivered with.
	first := map[int64][]byte{}
	outParts := inPartitionOrder(out)
	for _, p := range partitionsInOrder(outParts) {
		for _, r := range outParts[p] {
			seq, version, bad := a.checkEnriched(r, sent, written, compacted)
			if bad != "" {
				rep.mismatches++
				rep.note("%s[%d]@%d: %s", enrichOut, r.Partition, r.Offset, bad)
				continue
			}
			if bytes.Equal(first[seq], r.Value) {
				// An exact copy of an order already delivered: tally
				// counts it a duplicate; where it lands in the
				// partition says nothing of what the table held.
				got[seq]++
				continue
			}
			if first[seq] == nil {
				first[seq] = r.Value
			}
			key := string(r.Key)
			if before, ok := last[key]; ok && version < 0 && written[key] != nil && !written[key].deleted {
				// The table had the customer, and lost it.
				rep.mismatches++
				rep.note("%s[%d]@%d: order seq %d sees customer %s as null, after version %d, and it was never deleted", enrichOut, r.Partition, r.Offset, seq, key, before)
				continue
			}
			if version >= 0 {
				if before, ok := last[key]; ok && version < before {
					// The order was delivered, with a customer
					// older than one an earlier order saw.
					rep.mismatches++
					rep.note("%s[%d]@%d: order seq %d sees customer %s at version %d, after version %d", enrichOut, r.Partition, r.Offset, seq, key, version, before)
				}
				last[key] = max(last[key], version)
			}
			got[seq]++
		}
	}
	return got
}

// checkEnriched checks one output record against the order it carries
// (by its seq) and the customers written, and returns the order's seq, the
// customer version it carries (-1 for null), and what is wrong with it
// ("" when nothing).
func (*enrichApp) checkEnriched(r *kgo.Record, sent map[int64]enrichSent, written map[string]*enrichWritten, compacted map[int32]bool) (seq, version int64, bad string) {
	var v map[string]json.RawMessage
	if json.Unmarshal(r.Value, &v) != nil || json.Unmarshal(v["seq"], &seq) != nil {
		return 0, 0, fmt.Sprintf("a record that is no enriched order: %q", r.Value)
	}
	s, ok := sent[seq]
	if !ok {
		return seq, 0, fmt.Sprintf("order seq %d was never written (or not valid): %q", seq, r.Value)
	}
	if string(r.Key) != s.customer {
		return seq, 0, fmt.Sprintf("order seq %d keyed %q, want its customer_id %q", seq, r.Key, s.customer)
	}
	for f, raw := range s.order {
		if compactJSON(v[f]) != compactJSON(raw) {
			return seq, 0, fmt.Sprintf("order seq %d field %q is %s, want %s", seq, f, v[f], raw)
		}
	}
	c, ok := v["customer"]
	if !ok || len(v) != len(s.order)+1 {
		return seq, 0, fmt.Sprintf("order seq %d: want its fields and \"customer\", got %s", seq, r.Value)
	}
	w := written[s.customer]
	if compactJSON(c) == "null" {
		return seq, -1, "" // verify checks when a null may come
	}
	var cv enrichCustomerValue
	if json.Unmarshal(c, &cv) != nil || cv.Version == nil {
		return seq, 0, fmt.Sprintf("order seq %d has customer %s, not one written", seq, c)
	}
	switch {
	case w != nil && w.values[compactJSON(c)]:
	case w != nil && compacted[w.partition] && cv.Name == "customer "+s.customer[1:] && *cv.Version <= w.maxVersion:
		// Compacted away; a value the input did write.
	default:
		return seq, 0, fmt.Sprintf("order seq %d has customer %s, never written for %s", seq, c, s.customer)
	}
	return seq, *cv.Version, ""
}

// compactJSON returns raw without insignificant space (raw as is when it
// is no JSON), for comparing JSON values.
func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
