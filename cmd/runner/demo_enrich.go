package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/txn/txntest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const demoCustomers = 200

// demoEnrich runs the enrich app like demoPassthrough: customers first,
// then, once the workers have loaded them, n orders, one worker SIGKILLed
// and restarted halfway. Every 50th
// order repeats the order_id of the one before (a duplicate event: it must
// come out twice, as enrich does not deduplicate), every 97th is malformed
// and must land in the DLQ. Every order carries a unique "seq".
func demoEnrich(ctx context.Context, stdout, stderr io.Writer, n int64, nworkers int) error {
	p := newDemoProgress(stderr, "enrich", "orders", n)
	compact := "compact"
	rig, err := startDemoWith(ctx, p, []string{"customers", "orders", "orders-enriched"},
		map[string]map[string]*string{"customers": {"cleanup.policy": &compact}}, 8, nworkers,
		func(cl *kgo.Client) error {
			for i := range demoCustomers {
				cl.Produce(ctx, &kgo.Record{Topic: "customers", Key: fmt.Appendf(nil, "c%d", i), Value: fmt.Appendf(nil, `{"name":"customer %d"}`, i)}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				return err
			}
			p.say("%d customers in the customers table", demoCustomers)
			return nil
		}, "enrich")
	if err != nil {
		return err
	}
	defer rig.close()
	brokers, ws := rig.brokers, rig.ws
	// A task reads its partitions' records in the order they are fetched,
	// not merged by timestamp (docs/joins.md): an order fetched in the
	// same poll as, and before, its customer joins an empty table. So the
	// orders start once the group has committed the whole customers topic:
	// from then on a task's table is restored before it processes again.
	if err := waitConsumed(ctx, rig.cl, "enrich", "customers", time.Minute); err != nil {
		return err
	}
	p.say("the workers have loaded the customers table (the group's offsets are at its end)")
	start := time.Now()
	if err := rig.feed(ctx, n, func(from, to int64) error { return produceOrders(ctx, rig.cl, p, from, to) }); err != nil {
		return err
	}

	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p.say("reading orders-enriched and the DLQ with read_committed to verify them")
	var malformed int64
	for seq := range n {
		if isMalformed(seq) {
			malformed++
		}
	}
	out, wrong, err := readSeqs(vctx, brokers, "orders-enriched", n-malformed, func(r *kgo.Record) (int64, bool) {
		var o struct {
			Seq      int64           `json:"seq"`
			Customer json.RawMessage `json:"customer"`
		}
		if json.Unmarshal(r.Value, &o) != nil {
			return -1, false
		}
		want := fmt.Sprintf(`{"name":"customer %d"}`, o.Seq%demoCustomers)
		return o.Seq, string(r.Key) == fmt.Sprintf("c%d", o.Seq%demoCustomers) && string(o.Customer) == want
	})
	if err != nil {
		return err
	}
	dlq, err := readDLQ(vctx, brokers, "enrich", malformed)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := ws.failed(); err != nil {
		return err
	}
	p.finish()
	var dups, missing, dlqWrong int64
	for seq := range n {
		switch c := out[seq]; {
		case isMalformed(seq):
			if dlq[seq] != 1 || c != 0 {
				dlqWrong++
			}
		case c == 0:
			missing++
		case c > 1:
			dups += int64(c - 1)
		}
	}
	fmt.Fprintf(stdout, `demo report (enrich, %d workers, 1 SIGKILL + restart)
  orders in:        %d (%d repeat an order_id; %d malformed)
  enriched out:     %d
  duplicates:       %d
  missing:          %d
  wrong customer:   %d
  DLQ'd:            %d (%d not as expected)
  throughput:       %.0f orders/s end to end (%.1fs)
`, nworkers, n, n/50, malformed, countAll(out), dups, missing, wrong, countAll(dlq), dlqWrong, float64(n)/elapsed.Seconds(), elapsed.Seconds())
	if dups+missing+wrong+dlqWrong > 0 {
		return fmt.Errorf("runner: demo: enrich output is not exactly once")
	}
	fmt.Fprintln(stdout, "demo: clean: every order exactly once, with its customer; every malformed order in the DLQ")
	return nil
}

func isMalformed(seq int64) bool { return seq%97 == 96 }

// waitConsumed waits, up to limit, until group's committed offset of every
// partition of topic is at the partition's end.
func waitConsumed(ctx context.Context, cl *kgo.Client, group, topic string, limit time.Duration) error {
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("runner: demo: end offsets of %s: %w", topic, err)
	}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	var behind []string
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			behind = behind[:0]
			ends.Each(func(end kadm.ListedOffset) {
				if c, ok := committed.Lookup(topic, end.Partition); (!ok && end.Offset > 0) || c.At < end.Offset {
					behind = append(behind, fmt.Sprintf("%s/%d at %d of %d", topic, end.Partition, c.At, end.Offset))
				}
			})
			if len(behind) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runner: demo: group %s has not consumed %s within %v: %s (%v)", group, topic, limit, strings.Join(behind, ", "), err)
		case <-poll.C:
		}
	}
}

// readDLQ reads app's DLQ as readSeqs does, until want records: the demos'
// malformed records end in "seq=<n>", and every dead letter must carry
// headers (where it came from, and why).
func readDLQ(ctx context.Context, brokers []string, app string, want int64) (map[int64]int, error) {
	dlq, _, err := readSeqs(ctx, brokers, topology.DLQTopic(app), want, func(r *kgo.Record) (int64, bool) {
		_, after, _ := strings.Cut(string(r.Value), "seq=")
		seq, err := strconv.ParseInt(after, 10, 64)
		return seq, err == nil && r.Headers != nil
	})
	return dlq, err
}

func countAll(m map[int64]int) int64 {
	var n int64
	for _, c := range m {
		n += int64(c)
	}
	return n
}

// produceOrders writes orders [from, to); p counts what the broker
// acknowledged.
func produceOrders(ctx context.Context, cl *kgo.Client, p *demoProgress, from, to int64) error {
	var mu sync.Mutex
	var firstErr error
	for seq := from; seq < to; seq++ {
		id := seq
		if seq%50 == 49 {
			id = seq - 1 // a duplicate event: same order_id
		}
		v := fmt.Appendf(nil, `{"order_id":"o%d","customer_id":"c%d","amount_cents":%d,"seq":%d}`, id, seq%demoCustomers, seq%1000, seq)
		if isMalformed(seq) {
			v = fmt.Appendf(nil, `{"order_id":"o%d", broken seq=%d`, id, seq)
		}
		cl.Produce(ctx, &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "x%d", seq), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			p.acked()
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// readSeqs reads topic with read_committed until want records were read
// and it has been quiet for a second, or ctx ends, and counts the sequence
// numbers seq returns; ok false counts as wrong. It reads with large and
// with small fetches at once (txntest.Readers), and fails when the two
// disagree.
func readSeqs(ctx context.Context, brokers []string, topic string, want int64, seq func(*kgo.Record) (int64, bool)) (map[int64]int, int64, error) {
	type seqs struct {
		seen  map[int64]int
		wrong int64
	}
	read := func(lim txntest.Limits) (seqs, error) {
		got := seqs{seen: map[int64]int{}}
		var read int64
		err := txntest.ReadCommittedWith(ctx, brokers, topic, lim, func(r *kgo.Record) {
			read++
			s, ok := seq(r)
			if !ok {
				got.wrong++
			}
			got.seen[s]++
		}, func() bool { return read >= want })
		return got, err
	}
	diff := func(a, b seqs) string {
		if a.wrong != b.wrong {
			return fmt.Sprintf("%d wrong records vs %d", a.wrong, b.wrong)
		}
		return txntest.DiffMaps(a.seen, b.seen)
	}
	got, err := txntest.ReadEach(read, diff)
	if err != nil {
		return nil, 0, err
	}
	return got[0].seen, got[0].wrong, nil
}
