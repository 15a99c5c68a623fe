package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/stream/serde"
)

// stageCount is what a topic read with read_committed holds, against the
// plan: records, and among the planned ones those there more than once,
// missing or that must never be there (rolled back); wrong counts
// records not as written or not planned at all.
type stageCount struct {
	records, dups, missing, rolledBack, wrong int64
}

// outboxKafka is what each topic of the pipeline holds.
type outboxKafka struct {
	events, customers, unique, enriched stageCount
}

// orderNum returns the number of an order id "o<n>".
func orderNum(id string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "o"), 10, 64)
	return n, err == nil && strings.HasPrefix(id, "o")
}

// rowNum returns a relayed record's outbox row number, from its
// outboxRowHeader header.
func rowNum(r *kgo.Record) (int64, bool) {
	for _, h := range r.Headers {
		if h.Key == outboxRowHeader {
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			return n, err == nil
		}
	}
	return -1, false
}

// checkOutboxKafka reads the four topics of the pipeline with
// read_committed, at once, and counts each against the plan:
// order-events and customers by outbox row (each committed row once, as
// written, none of a rolled-back transaction), orders (the dedup app's
// output) and orders-enriched by order (each committed order once, none
// rolled back; orders-enriched keyed by the order's customer, with its
// customer_id and amount).
func checkOutboxKafka(ctx context.Context, brokers []string, plan *outboxPlan) (outboxKafka, error) {
	orderSeq := func(check func(r *kgo.Record, e orderEvent, o orderEvent) bool) func(*kgo.Record) (int64, bool) {
		return func(r *kgo.Record) (int64, bool) {
			e, err := serde.JSON[orderEvent]().Decode(r.Value)
			if err != nil {
				return -1, false
			}
			n, ok := orderNum(e.OrderID)
			if !ok || n >= int64(len(plan.ordersByNum)) {
				return -1, false
			}
			return n, check(r, e, plan.ordersByNum[n])
		}
	}
	reads := []struct {
		topic string
		want  int64
		seq   func(*kgo.Record) (int64, bool)
		count func(seen map[int64]int, wrong int64) stageCount
	}{
		{"order-events", int64(len(plan.eventRows)), rowNum, func(seen map[int64]int, wrong int64) stageCount {
			return countRows(seen, wrong, plan.eventRows, plan.rolledBackRows)
		}},
		{"customers", int64(len(plan.customerRows)), func(r *kgo.Record) (int64, bool) {
			n, ok := rowNum(r)
			if want, planned := plan.customerRows[n]; planned {
				ok = ok && string(r.Key) == want.id && bytes.Equal(r.Value, want.value) && (r.Value == nil) == (want.value == nil)
			}
			return n, ok
		}, func(seen map[int64]int, wrong int64) stageCount {
			rows := make(map[int64]bool, len(plan.customerRows))
			for n := range plan.customerRows {
				rows[n] = true
			}
			return countRows(seen, wrong, rows, plan.rolledBackRows)
		}},
		{"orders", plan.orders, orderSeq(func(_ *kgo.Record, e, o orderEvent) bool { return e == o }),
			func(seen map[int64]int, wrong int64) stageCount { return countOrders(seen, wrong, plan) }},
		{"orders-enriched", plan.orders, orderSeq(func(r *kgo.Record, e, o orderEvent) bool {
			return e == o && string(r.Key) == o.CustomerID
		}), func(seen map[int64]int, wrong int64) stageCount { return countOrders(seen, wrong, plan) }},
	}
	counts := make([]stageCount, len(reads))
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for i, rd := range reads {
		wg.Go(func() {
			seen, wrong, err := readSeqs(ctx, brokers, rd.topic, rd.want, rd.seq)
			if err != nil {
				errs[i] = err
				return
			}
			counts[i] = rd.count(seen, wrong)
		})
	}
	wg.Wait()
	return outboxKafka{events: counts[0], customers: counts[1], unique: counts[2], enriched: counts[3]}, errors.Join(errs...)
}

// countRows counts outbox rows read (seen, by row number; -1 those
// without one, which readSeqs counted as wrong) against the committed
// rows want and the rolled-back ones: a row of neither is wrong.
func countRows(seen map[int64]int, wrong int64, want, rolledBack map[int64]bool) stageCount {
	s := stageCount{records: countAll(seen), wrong: wrong}
	for row := range want {
		switch c := seen[row]; {
		case c == 0:
			s.missing++
		case c > 1:
			s.dups += int64(c - 1)
		}
	}
	for row, c := range seen {
		if rolledBack[row] {
			s.rolledBack += int64(c)
		} else if !want[row] && row >= 0 { // readSeqs counted those without a number as wrong
			s.wrong += int64(c)
		}
	}
	return s
}

// countOrders counts orders read (seen, by number; -1 those that are not
// a planned order, which readSeqs counted as wrong) against the plan's
// committed and rolled-back orders.
func countOrders(seen map[int64]int, wrong int64, plan *outboxPlan) stageCount {
	s := stageCount{records: countAll(seen), wrong: wrong}
	for order := range int64(len(plan.ordersByNum)) {
		switch c := seen[order]; {
		case plan.rolledBack[order]:
			s.rolledBack += int64(c)
		case c == 0:
			s.missing++
		case c > 1:
			s.dups += int64(c - 1)
		}
	}
	return s
}

// outboxSQL is what the sink's table orders_enriched holds compared with
// the orders and customers tables and the plan, all read in one snapshot.
type outboxSQL struct {
	srcCount, srcSum, sinkCount, sinkSum int64
	missing                              int64 // committed orders with no row in orders_enriched
	unexpected                           int64 // rows with no order in orders
	wrong                                int64 // rows whose customer_id or amount differ from the order's
	rolledBack                           int64 // rows of rolled-back orders
	// customerWrong counts rows whose customer is not one of the values
	// the order's customer had from the one loaded before the order's
	// phase on (another customer's, a rolled-back value, an older value,
	// null for a customer that exists); customerNewer those that joined
	// a value committed after that one; customerNull those that joined
	// null (a deleted customer).
	customerWrong, customerNewer, customerNull int64
	// totalsDiffer counts customers whose count or sum of amount_cents in
	// orders_enriched differ from the plan's; customers those in the plan.
	totalsDiffer, customers int64
	// customersTable counts the rows of the customers table;
	// customersDiffer customers whose row is not the plan's last value
	// (or that exist although deleted, or the other way round).
	customersTable, customersDiffer int64
}

// checkOutboxSQL recomputes counts and sums of amounts of the orders table
// and of the sink's table orders_enriched, per customer too, and counts
// the differences with each other and with the plan; it checks each
// row's customer against the customer's committed values (the plan's,
// passed in as arrays) and the customers table against the plan's last
// values.
func checkOutboxSQL(ctx context.Context, pool *pgxpool.Pool, plan *outboxPlan) (outboxSQL, error) {
	rolled := make([]string, 0, len(plan.rolledBack))
	for o := range plan.rolledBack {
		rolled = append(rolled, "o"+strconv.FormatInt(o, 10))
	}
	var stateIDs, finalIDs []string
	var stateIdx []int32
	var stateValues []*string
	var finalValues []string
	for id, states := range plan.states {
		for i, c := range states {
			stateIDs, stateIdx = append(stateIDs, id), append(stateIdx, int32(i))
			var v *string
			if c != nil {
				s := string(customerChange{value: c}.encode())
				v = &s
			}
			stateValues = append(stateValues, v)
		}
		if last := states[len(states)-1]; last != nil {
			finalIDs = append(finalIDs, id)
			finalValues = append(finalValues, string(customerChange{value: last}.encode()))
		}
	}
	floorIDs := make([]string, 0, len(plan.floor))
	floors := make([]int32, 0, len(plan.floor))
	for o, f := range plan.floor {
		floorIDs, floors = append(floorIDs, "o"+strconv.FormatInt(o, 10)), append(floors, int32(f))
	}

	var s outboxSQL
	sums := map[string]total{}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM orders),
			(SELECT coalesce(sum(amount_cents), 0)::bigint FROM orders),
			(SELECT count(*) FROM orders_enriched),
			(SELECT coalesce(sum(amount_cents), 0)::bigint FROM orders_enriched),
			(SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM orders_enriched e WHERE e.order_id = o.order_id)),
			(SELECT count(*) FROM orders_enriched e WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = e.order_id)),
			(SELECT count(*) FROM orders_enriched e JOIN orders o USING (order_id)
				WHERE e.amount_cents IS DISTINCT FROM o.amount_cents OR e.customer_id IS DISTINCT FROM o.customer_id
				   OR (e.enriched->>'amount_cents')::bigint IS DISTINCT FROM o.amount_cents),
			(SELECT count(*) FROM orders_enriched WHERE order_id = ANY($1))`, rolled).
			Scan(&s.srcCount, &s.srcSum, &s.sinkCount, &s.sinkSum, &s.missing, &s.unexpected, &s.wrong, &s.rolledBack)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `WITH
			states AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) AS s(customer_id, state, value)),
			floors AS (SELECT * FROM unnest($4::text[], $5::int[]) AS f(order_id, floor)),
			joined AS (
				SELECT e.customer IS NULL AS null_customer,
					EXISTS (SELECT 1 FROM states s WHERE s.customer_id = e.customer_id AND s.state >= f.floor
						AND s.value::jsonb IS NOT DISTINCT FROM e.customer) AS ok,
					EXISTS (SELECT 1 FROM states s WHERE s.customer_id = e.customer_id AND s.state > f.floor
						AND s.value::jsonb IS NOT DISTINCT FROM e.customer) AS newer
				FROM orders_enriched e JOIN floors f USING (order_id))
			SELECT count(*) FILTER (WHERE NOT ok), count(*) FILTER (WHERE ok AND newer), count(*) FILTER (WHERE null_customer)
			FROM joined`, stateIDs, stateIdx, stateValues, floorIDs, floors).
			Scan(&s.customerWrong, &s.customerNewer, &s.customerNull)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `WITH final AS (SELECT * FROM unnest($1::text[], $2::text[]) AS f(customer_id, value))
			SELECT (SELECT count(*) FROM customers),
				(SELECT count(*) FROM final f FULL JOIN customers c USING (customer_id)
				WHERE f.value IS NULL OR c.customer_id IS NULL OR f.value::jsonb IS DISTINCT FROM
					jsonb_build_object('customer_id', c.customer_id, 'name', c.name, 'tier', c.tier, 'version', c.version))`,
			finalIDs, finalValues).Scan(&s.customersTable, &s.customersDiffer)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT customer_id, count(*), sum(amount_cents)::bigint FROM orders_enriched GROUP BY customer_id`)
		if err != nil {
			return err
		}
		var id string
		var t total
		_, err = pgx.ForEachRow(rows, []any{&id, &t.orders, &t.cents}, func() error {
			sums[id] = t
			return nil
		})
		return err
	})
	if err != nil {
		return s, fmt.Errorf("runner: demo outbox: checking the tables: %w", err)
	}
	s.customers = int64(len(plan.perCustomer))
	for id, want := range plan.perCustomer {
		if sums[id] != want {
			s.totalsDiffer++
		}
	}
	for id := range sums {
		if _, ok := plan.perCustomer[id]; !ok {
			s.totalsDiffer++
		}
	}
	return s, nil
}
