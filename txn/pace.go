package txn

import "time"

// pace estimates how long the worker takes to process one input record,
// producing its outputs included as far as the producer's backpressure
// makes processing wait for it. A transaction's polls take as many
// records as that estimate says fit in what is left of the commit
// interval.
//
// Why it matters: franz-go keeps one fetch response buffered per broker
// and asks for the next only once the buffered one is drained. A
// transaction that polls the buffered records in small chunks drains the
// response only at its end, so the next fetch goes out just before the
// commit, and the next transaction starts by waiting for it. Polling what
// fits at once drains the response at the start, and the next fetch
// arrives while the transaction processes and commits.
//
// The estimate follows a slowdown at once and a speedup gradually, so
// that one fast chunk after slow ones does not make a transaction poll
// more than it can process before the transaction timeout. The zero pace
// knows nothing yet, and polls firstPoll records.
//
// A pace belongs to the worker's loop goroutine.
type pace struct {
	perRecord time.Duration // 0: not measured yet
}

// firstPoll is how many records a transaction polls at once before any
// processing has been measured.
const firstPoll = 1000

// observe records that processing n records took d.
func (p *pace) observe(n int, d time.Duration) {
	if n <= 0 {
		return
	}
	per := max(d/time.Duration(n), 1)
	switch {
	case p.perRecord == 0 || per >= p.perRecord:
		p.perRecord = per
	default:
		p.perRecord -= (p.perRecord - per) / 4
	}
}

// records returns how many records fit in budget, at least 1 and at most
// limit (taken as 1 when smaller: franz-go polls everything buffered when
// asked for 0).
func (p *pace) records(budget time.Duration, limit int) int {
	limit = max(limit, 1)
	if p.perRecord == 0 {
		return min(firstPoll, limit)
	}
	return int(max(1, min(int64(limit), int64(budget/p.perRecord))))
}
