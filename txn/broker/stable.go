package broker

import (
	"context"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stableOffsets makes the embedded broker answer an offset fetch that
// requires stable offsets (KIP-447) the way Kafka does: with
// UNSTABLE_OFFSET_COMMIT only when one of the requested partitions has
// offsets pending in an open transaction.
//
// # Why
//
// kfake answers UNSTABLE_OFFSET_COMMIT for every partition of a group while
// any transaction holds offsets for any of its partitions. In a busy group
// some member nearly always does, so a worker that joins or takes over
// partitions keeps getting the error, and franz-go retries the whole fetch
// after a second each time: restarts and takeovers took seconds longer
// than on Kafka, at random.
//
// # How
//
// It watches TxnOffsetCommit requests and remembers which transaction
// (transactional id, producer id and epoch) sent offsets for which
// partition. For a require-stable fetch it asks the broker, with
// DescribeTransactions, which of those transactions are still open under
// the same producer id and epoch. If none is, it clears RequireStable and
// lets kfake answer, so the fetch returns the committed offsets; otherwise
// kfake answers as before. Every mismatch errs towards "pending": a
// transaction recorded but rejected, or a later one of the same producer
// under an epoch kfake did not bump, only delays a fetch as kfake would
// have anyway. Offsets kfake holds pending always came in a TxnOffsetCommit
// seen here, and a transaction's epoch only moves on when it ends, so an
// answer of "stable" is never wrong.
//
// # Atomicity
//
// Kafka decides an offset fetch atomically; here the question to the
// broker is a round trip during which other requests run, TxnOffsetCommit
// among them. So each record of a transaction sending offsets for a
// partition carries a sequence number, and the decision is taken after the
// round trip, back in the cluster's serial loop, over the senders recorded
// by then: a sender recorded since the question was asked, or recorded
// again (the next transaction of a producer whose epoch kfake did not
// bump), counts as pending; only a sender unchanged since the question and
// found ended is forgotten. kfake answers the fetch in that same serial
// step, so no TxnOffsetCommit falls between the decision and the answer.
// Partitions are decided one by one, but the answer is kfake's, for the
// whole request: when one partition asked for is pending, every partition
// asked for is refused (franz-go and the Java client retry the whole fetch
// then, as they would for the pending partition alone).
type stableOffsets struct {
	addr string
	// sleep runs wake while the cluster serves other requests, and
	// returns in the cluster's serial loop (Cluster.SleepControl);
	// lookUp asks the broker about senders (stableOffsets.describe).
	// Tests replace both.
	sleep  func(wake func())
	lookUp func(senders map[groupPartition][]sender) (map[[16]byte]string, map[txnRef]bool)

	mu sync.Mutex
	// senders holds, per group partition, the transactions that sent
	// offsets for it and may not have ended, each with the sequence
	// number of the last TxnOffsetCommit it sent for the partition; seq
	// numbers TxnOffsetCommit requests.
	senders map[groupPartition]map[txnRef]uint64
	seq     uint64
}

// sender is a transaction that sent offsets for a partition, with the
// sequence number of the last TxnOffsetCommit it sent for it.
type sender struct {
	txnRef
	seq uint64
}

// groupPartition is a partition of a group's offsets. Requests name the
// topic (older versions) or give its id (TxnOffsetCommit v6+, OffsetFetch
// v10+); whichever came is kept.
type groupPartition struct {
	group     string
	topic     string
	topicID   [16]byte
	partition int32
}

type txnRef struct {
	txnID      string
	producerID int64
	epoch      int16
}

// watchStableOffsets installs the watch on cluster, whose first listener is
// addr. The control functions stay installed for the cluster's lifetime.
func watchStableOffsets(cluster *kfake.Cluster, addr string) {
	s := &stableOffsets{addr: addr, sleep: cluster.SleepControl, senders: map[groupPartition]map[txnRef]uint64{}}
	s.lookUp = s.describe
	cluster.ControlKey(kmsg.TxnOffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		s.sent(req.(*kmsg.TxnOffsetCommitRequest))
		return nil, nil, false
	})
	cluster.ControlKey(kmsg.OffsetFetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		s.fetch(req.(*kmsg.OffsetFetchRequest))
		return nil, nil, false
	})
}

// sent records the transaction of a TxnOffsetCommit request. A newer epoch
// of the same producer ends the older ones' transactions: their entries go.
func (s *stableOffsets) sent(req *kmsg.TxnOffsetCommitRequest) {
	ref := txnRef{req.TransactionalID, req.ProducerID, req.ProducerEpoch}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			gp := groupPartition{req.Group, t.Topic, t.TopicID, p.Partition}
			refs := s.senders[gp]
			if refs == nil {
				refs = map[txnRef]uint64{}
				s.senders[gp] = refs
			}
			for r := range refs {
				if r.txnID == ref.txnID && r.producerID == ref.producerID && r.epoch < ref.epoch {
					delete(refs, r)
				}
			}
			refs[ref] = s.seq
		}
	}
}

// fetch clears RequireStable on req when none of the partitions it asks
// for has offsets pending in an open transaction.
func (s *stableOffsets) fetch(req *kmsg.OffsetFetchRequest) {
	if !req.RequireStable {
		return
	}
	wants := wanted(req)
	senders := s.sendersOf(wants)
	if len(senders) > 0 {
		var names map[[16]byte]string
		var open map[txnRef]bool
		// Asking the broker while this request waits lets the cluster
		// serve other requests, these among them; pending decides over
		// what was recorded meanwhile too.
		s.sleep(func() { names, open = s.lookUp(senders) })
		if s.pending(wants, senders, names, open) {
			return // kfake answers UNSTABLE_OFFSET_COMMIT
		}
	}
	req.RequireStable = false
}

// want is a set of partitions an offset fetch asks for: all of a group's
// when all is set.
type want struct {
	gp         groupPartition // partition unused
	partitions []int32
	all        bool
}

// wanted returns what req asks for, whatever its version.
func wanted(req *kmsg.OffsetFetchRequest) []want {
	var wants []want
	if req.Version <= 7 {
		if req.Topics == nil {
			wants = append(wants, want{gp: groupPartition{group: req.Group}, all: true})
		}
		for _, t := range req.Topics {
			wants = append(wants, want{gp: groupPartition{group: req.Group, topic: t.Topic}, partitions: t.Partitions})
		}
		return wants
	}
	for _, g := range req.Groups {
		if g.Topics == nil {
			wants = append(wants, want{gp: groupPartition{group: g.Group}, all: true})
		}
		for _, t := range g.Topics {
			wants = append(wants, want{gp: groupPartition{group: g.Group, topic: t.Topic, topicID: t.TopicID}, partitions: t.Partitions})
		}
	}
	return wants
}

// sendersOf returns the recorded transactions of the groups in wants, by
// partition.
func (s *stableOffsets) sendersOf(wants []want) map[groupPartition][]sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[groupPartition][]sender{}
	for gp, refs := range s.senders {
		if !slices.ContainsFunc(wants, func(w want) bool { return w.gp.group == gp.group }) {
			continue
		}
		for r, seq := range refs {
			out[gp] = append(out[gp], sender{r, seq})
		}
	}
	return out
}

// describe asks the broker for its topics' names by id, and for each
// sender whether its transaction is still open under the same producer id
// and epoch. A sender it cannot find out about counts as open; a topic id
// it cannot name matches every topic.
func (s *stableOffsets) describe(senders map[groupPartition][]sender) (map[[16]byte]string, map[txnRef]bool) {
	names := map[[16]byte]string{}
	open := map[txnRef]bool{}
	req := kmsg.NewPtrDescribeTransactionsRequest()
	for _, refs := range senders {
		for _, r := range refs {
			if _, ok := open[r.txnRef]; !ok && !slices.Contains(req.TransactionalIDs, r.txnID) {
				req.TransactionalIDs = append(req.TransactionalIDs, r.txnID)
			}
			open[r.txnRef] = true
		}
	}
	var resp *kmsg.DescribeTransactionsResponse
	ask(s.addr, func(ctx context.Context, cl *kgo.Client) {
		if meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err == nil {
			for _, t := range meta.Topics {
				if t.Topic != nil {
					names[t.TopicID] = *t.Topic
				}
			}
		}
		if r, err := req.RequestWith(ctx, cl); err == nil {
			resp = r
		}
	})
	if resp == nil {
		return names, open
	}
	for _, st := range resp.TransactionStates {
		if st.ErrorCode != 0 {
			continue
		}
		for r := range open {
			if r.txnID == st.TransactionalID {
				open[r] = st.State == "Ongoing" && st.ProducerID == r.producerID && st.ProducerEpoch == r.epoch
			}
		}
	}
	return names, open
}

// pending forgets the senders found ended and reports whether a partition
// in wants may have offsets pending. It decides over the senders recorded
// now, not only those asked about (senders): one recorded since, or
// recorded again for the partition since, counts as open; one asked about
// and found ended is forgotten for the partition.
func (s *stableOffsets) pending(wants []want, senders map[groupPartition][]sender, names map[[16]byte]string, open map[txnRef]bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for gp, ss := range senders {
		for _, sn := range ss {
			if !open[sn.txnRef] && s.senders[gp][sn.txnRef] == sn.seq {
				s.forget(gp, sn.txnRef)
			}
		}
	}
	for gp, refs := range s.senders {
		if len(refs) == 0 {
			continue
		}
		for _, w := range wants {
			if w.gp.group == gp.group && (w.all || slices.Contains(w.partitions, gp.partition) && sameTopic(w.gp, gp, names)) {
				return true
			}
		}
	}
	return false
}

// sameTopic reports whether a and b may be the same topic: it is false
// only when both are named and the names differ.
func sameTopic(a, b groupPartition, names map[[16]byte]string) bool {
	name := func(gp groupPartition) string {
		if gp.topic != "" {
			return gp.topic
		}
		return names[gp.topicID]
	}
	na, nb := name(a), name(b)
	return na == "" || nb == "" || na == nb
}

// forget drops an ended transaction from a partition; s.mu is held.
func (s *stableOffsets) forget(gp groupPartition, r txnRef) {
	refs := s.senders[gp]
	delete(refs, r)
	if len(refs) == 0 {
		delete(s.senders, gp)
	}
}
