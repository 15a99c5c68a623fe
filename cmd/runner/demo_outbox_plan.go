package main

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The generator's plan: every database transaction of the outbox demo,
// decided before it starts so that the checks know what must come out.
const (
	outboxDemoCustomers = 50 // customers c0..c49, whose orders run throughout
	outboxDemoPhases    = outboxDemoKills + 1
	// demoCustomerGone is deleted in the second phase and
	// demoCustomerLate created then; both get orders in the last phase
	// only, by when the enrich workers have loaded both changes: the
	// first must join null, the second its value.
	demoCustomerGone = "c50"
	demoCustomerLate = "c51"
)

// orderEvent is the value of an order's event: the dedup app's event_id
// is the order's id, and the rest is the order as the orders table holds
// it (the enrich app's order format).
type orderEvent struct {
	EventID     string `json:"event_id"`
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
}

// customer is a row of the customers table, and the value of its record
// in the topic customers. Every change of a customer, rolled back or not,
// gets a version of its own, so that each value tells which change wrote
// it.
type customer struct {
	CustomerID string `json:"customer_id"`
	Name       string `json:"name"`
	Tier       string `json:"tier"`
	Version    int    `json:"version"`
}

// customerChange is one change of a customer: its new value, or a delete
// (value nil; a record with a null value in the topic).
type customerChange struct {
	id    string
	value *customer
}

// encode returns the value of the change's outbox row: the customer's
// JSON, nil for a delete.
func (c customerChange) encode() []byte {
	if c.value == nil {
		return nil
	}
	b, _ := json.Marshal(c.value) // a struct of strings and an int
	return b
}

// demoTxn is one database transaction of the generator: its orders and
// the outbox rows that announce them (an order's event can be written
// twice, or announced again by a later transaction), or changes of
// customers with a row each; and whether it rolls back. rows are the
// outbox rows' numbers (in the outboxRowHeader header): the events'
// first, then the changes'.
type demoTxn struct {
	orders   []orderEvent
	events   []orderEvent
	changes  []customerChange
	rows     []int64
	rollback bool
}

// customerRow is what a committed outbox row of the topic customers
// carries.
type customerRow struct {
	id    string
	value []byte // nil: a delete
}

// outboxPlan is every transaction the generator runs: setup, the
// customers' first values, committed before any order; then phases, one
// after the other, between which the demo kills the relay and the sink
// and waits until the enrich workers have loaded the customers' changes.
type outboxPlan struct {
	setup  []demoTxn
	phases [][]demoTxn

	// ordersByNum are all orders, committed or not, by number ("o<n>").
	ordersByNum []orderEvent
	// eventRows and customerRows are the committed outbox rows of each
	// topic, by number; rolledBackRows those of rolled-back transactions;
	// rolledBack the numbers of the orders of rolled-back transactions.
	eventRows      map[int64]bool
	customerRows   map[int64]customerRow
	rolledBackRows map[int64]bool
	rolledBack     map[int64]bool

	// states are each customer's committed values in order (nil: the
	// customer does not exist); floor is, for each committed order, the
	// index in its customer's states of the value the enrich workers
	// have loaded before the order's phase starts. The order must join
	// that value or a later one.
	states map[string][]*customer
	floor  map[int64]int

	orders, repeats, amount int64            // committed orders, rows that repeat an event, their amount_cents
	perCustomer             map[string]total // committed orders' count and amount_cents by customer
	txns, rolledBackTxns    int64            // transactions of every kind
	customerTxns            int64            // committed customer transactions (setup included)
	firsts, updates         int64            // committed customer changes: first values (setup), updates,
	deletes, creates        int64            // deletes and customers created during the phases
	rolledBackChanges       int64
	goneOrders              int64 // committed orders of demoCustomerGone: they join null
}

// total is a count of orders and their sum of amount_cents.
type total struct{ orders, cents int64 }

// planOutbox plans transactions until n orders are committed. The setup
// writes customers c0..c50 in transactions of ten. Each phase commits a
// quarter of the orders: a transaction writes 1 to 4 orders with an
// event each; every 9th rolls back after writing; every 5th committed one
// writes its first event twice, and every 7th announces again the first
// order of the order transaction three before it. Orders go to c0..c49,
// except, in the last phase, those of every 10th order transaction: to
// demoCustomerGone or demoCustomerLate. Spread over each phase, customer
// transactions of two changes each change every third customer (no
// customer twice in a phase, so that no two transactions race for one
// key); the second phase also deletes demoCustomerGone and creates
// demoCustomerLate. Every 4th customer transaction that only updates
// rolls back.
func planOutbox(n int64) *outboxPlan {
	p := &outboxPlan{eventRows: map[int64]bool{}, customerRows: map[int64]customerRow{}, rolledBackRows: map[int64]bool{},
		rolledBack: map[int64]bool{}, states: map[string][]*customer{}, floor: map[int64]int{}, perCustomer: map[string]total{}}
	var row int64
	versions := map[string]int{}
	value := func(id string) *customer {
		v := versions[id]
		versions[id]++
		num, _ := strconv.Atoi(id[1:])
		return &customer{CustomerID: id, Name: "customer " + id[1:], Tier: []string{"bronze", "silver", "gold"}[(num+v)%3], Version: v}
	}
	// add numbers tx's rows, records what commits, and returns tx.
	add := func(tx demoTxn) demoTxn {
		p.txns++
		if tx.rollback {
			p.rolledBackTxns++
		} else if len(tx.changes) > 0 {
			p.customerTxns++
		}
		for range tx.events {
			tx.rows = append(tx.rows, row)
			if tx.rollback {
				p.rolledBackRows[row] = true
			} else {
				p.eventRows[row] = true
			}
			row++
		}
		for _, c := range tx.changes {
			tx.rows = append(tx.rows, row)
			if tx.rollback {
				p.rolledBackRows[row] = true
				p.rolledBackChanges++
			} else {
				switch s := p.states[c.id]; {
				case len(s) == 0:
					p.firsts++
				case c.value == nil:
					p.deletes++
				case s[len(s)-1] == nil:
					p.creates++
				default:
					p.updates++
				}
				p.customerRows[row] = customerRow{id: c.id, value: c.encode()}
				p.states[c.id] = append(p.states[c.id], c.value)
			}
			row++
		}
		return tx
	}

	for first := 0; first <= 50; first += 10 {
		tx := demoTxn{}
		for c := first; c < min(first+10, 51); c++ {
			id := fmt.Sprintf("c%d", c)
			tx.changes = append(tx.changes, customerChange{id: id, value: value(id)})
		}
		p.setup = append(p.setup, add(tx))
	}
	p.states[demoCustomerLate] = []*customer{nil}

	var order, t, ct int64 // orders, order transactions, customer transactions
	var orderTxns []demoTxn
	for k := range int64(outboxDemoPhases) {
		floors := map[string]int{}
		for id, s := range p.states {
			floors[id] = len(s) - 1
		}
		var changes []customerChange
		if k == 1 {
			changes = append(changes, customerChange{id: demoCustomerGone}, customerChange{id: demoCustomerLate, value: value(demoCustomerLate)})
		}
		for c := range int64(outboxDemoCustomers) {
			if (c+k)%3 == 0 {
				id := fmt.Sprintf("c%d", c)
				changes = append(changes, customerChange{id: id, value: value(id)})
			}
		}
		var ctxs []demoTxn
		for i := 0; i < len(changes); i += 2 {
			tx := demoTxn{changes: changes[i:min(i+2, len(changes))]}
			lifecycle := false
			for _, c := range tx.changes {
				lifecycle = lifecycle || c.id == demoCustomerGone || c.id == demoCustomerLate
			}
			tx.rollback = ct%4 == 3 && !lifecycle
			ct++
			ctxs = append(ctxs, tx)
		}

		var phase []demoTxn
		from, to := n*k/outboxDemoPhases, n*(k+1)/outboxDemoPhases
		next := 0 // the next customer transaction; number i goes in once (i+1)/(len+1) of the phase's orders are
		for p.orders < to {
			tx := demoTxn{rollback: t%9 == 8}
			size := 1 + t%4
			if !tx.rollback {
				size = min(size, to-p.orders)
			}
			for j := range size {
				e := orderEvent{OrderID: "o" + strconv.FormatInt(order, 10), CustomerID: fmt.Sprintf("c%d", (t+j)%outboxDemoCustomers),
					AmountCents: (t*31+j*17)%10_000 + 1}
				if k == outboxDemoPhases-1 && t%10 == 5 {
					e.CustomerID = []string{demoCustomerGone, demoCustomerLate}[(t/10)%2]
				}
				e.EventID = e.OrderID
				tx.orders = append(tx.orders, e)
				tx.events = append(tx.events, e)
				p.ordersByNum = append(p.ordersByNum, e)
				if tx.rollback {
					p.rolledBack[order] = true
				} else {
					p.floor[order] = floors[e.CustomerID]
				}
				order++
			}
			if !tx.rollback {
				if t%5 == 0 {
					tx.events = append(tx.events, tx.orders[0])
					p.repeats++
				}
				if t%7 == 3 && !orderTxns[t-3].rollback {
					tx.events = append(tx.events, orderTxns[t-3].orders[0])
					p.repeats++
				}
				for _, o := range tx.orders {
					p.orders++
					p.amount += o.AmountCents
					s := p.perCustomer[o.CustomerID]
					s.orders++
					s.cents += o.AmountCents
					p.perCustomer[o.CustomerID] = s
					if o.CustomerID == demoCustomerGone {
						p.goneOrders++
					}
				}
			}
			orderTxns = append(orderTxns, tx)
			phase = append(phase, add(tx))
			t++
			for next < len(ctxs) && (p.orders-from)*int64(len(ctxs)+1) >= (to-from)*int64(next+1) {
				phase = append(phase, add(ctxs[next]))
				next++
			}
		}
		for ; next < len(ctxs); next++ {
			phase = append(phase, add(ctxs[next]))
		}
		p.phases = append(p.phases, phase)
	}
	return p
}
