package broker

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fencedEnds makes the embedded broker answer the EndTxn of a producer
// fenced by another with its transactional id the way Kafka does: with
// PRODUCER_FENCED, whether it commits or aborts.
//
// # Why
//
// Under KIP-890 every EndTxn bumps the producer's epoch, and an EndTxn at
// the epoch just below the current one, while no transaction is open, is
// a retry of one that completed: Kafka answers it with success if it asks
// for the same outcome. kfake tells a retry apart only that way. But when
// an InitProducerID fences a producer, kfake bumps the epoch once (Kafka
// at least twice: once to fence, once more for the new producer), so the
// fenced producer's epoch is just below its successor's, and until the
// successor opens a transaction, kfake takes the fenced producer's EndTxn
// for a retry: an abort is answered with success and the successor's
// epoch, a commit with INVALID_TXN_STATE. franz-go adopts the epoch an
// EndTxn returns, so a fenced producer that aborts (as one does when its
// partitions are revoked) is no longer fenced: it shares its successor's
// producer id and epoch, its next transactions commit, and whichever of
// the two ends a transaction first fences the other
// (TestFencedProducerStaysFencedWhenItAborts).
//
// # How
//
// It watches InitProducerID and EndTxn requests. After an InitProducerID
// for a transactional id, each EndTxn for it is checked until one is sent
// at the current epoch: it asks the broker with DescribeTransactions for
// the transactional id's producer id and epoch, and answers an EndTxn of
// that producer id at an earlier epoch with PRODUCER_FENCED itself, as it
// does one during which another InitProducerID for the id came in (that
// one fenced it). kfake answers the others. An EndTxn checked this way
// cannot be a retry of one that completed since the InitProducerID: that
// one was sent at the current epoch and ended the checks; and a retry of
// one that completed before the InitProducerID is fenced on Kafka too.
// Outside these checks kfake's answers stand: an epoch bumped without an
// InitProducerID was bumped by the EndTxn being retried, or by kfake
// itself (a transaction timeout, a crash), where the only producer at
// the old epoch is the one whose transaction was aborted, and kfake
// answers a commit with an error.
type fencedEnds struct {
	cluster *kfake.Cluster
	addr    string

	mu sync.Mutex
	// inits counts the InitProducerID requests seen per transactional
	// id; checked holds the ids whose EndTxn requests are checked.
	inits   map[string]uint64
	checked map[string]bool
}

// watchFencedEnds installs the watch on cluster, whose first listener is
// addr. The control functions stay installed for the cluster's lifetime.
func watchFencedEnds(cluster *kfake.Cluster, addr string) {
	f := &fencedEnds{cluster: cluster, addr: addr, inits: map[string]uint64{}, checked: map[string]bool{}}
	cluster.ControlKey(kmsg.InitProducerID.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if id := req.(*kmsg.InitProducerIDRequest).TransactionalID; id != nil {
			f.mu.Lock()
			f.inits[*id]++
			f.checked[*id] = true
			f.mu.Unlock()
		}
		return nil, nil, false
	})
	cluster.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !f.fenced(end) {
			return nil, nil, false
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.ProducerFenced.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil, true
	})
}

// fenced reports whether req comes from a producer fenced by an
// InitProducerID of its transactional id.
func (f *fencedEnds) fenced(req *kmsg.EndTxnRequest) bool {
	f.mu.Lock()
	checked, inits := f.checked[req.TransactionalID], f.inits[req.TransactionalID]
	f.mu.Unlock()
	if !checked || req.Version < 5 {
		return false // before v5 kfake takes no EndTxn for a retry
	}
	var st kmsg.DescribeTransactionsResponseTransactionState
	var ok bool
	// Asking the broker while this request waits: SleepControl lets the
	// cluster serve other requests, this one among them.
	f.cluster.SleepControl(func() { st, ok = f.current(req.TransactionalID) })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inits[req.TransactionalID] != inits {
		return true // fenced while it waited
	}
	if !ok || st.ProducerID != req.ProducerID {
		return false // kfake answers: unknown, or another producer id
	}
	// An EndTxn at the current epoch that kfake completes, bumping the
	// epoch, ends the checks: one that ends a transaction, or aborts.
	if st.ProducerEpoch == req.ProducerEpoch && (st.State == "Ongoing" || !req.Commit) {
		delete(f.checked, req.TransactionalID)
	}
	return req.ProducerEpoch < st.ProducerEpoch
}

// current asks the broker for the state of transactional id txnID; ok is
// false when it cannot tell.
func (f *fencedEnds) current(txnID string) (st kmsg.DescribeTransactionsResponseTransactionState, ok bool) {
	ask(f.addr, func(ctx context.Context, cl *kgo.Client) {
		req := kmsg.NewPtrDescribeTransactionsRequest()
		req.TransactionalIDs = []string{txnID}
		resp, err := req.RequestWith(ctx, cl)
		if ok = err == nil && len(resp.TransactionStates) == 1 && resp.TransactionStates[0].ErrorCode == 0; ok {
			st = resp.TransactionStates[0]
		}
	})
	return st, ok
}
