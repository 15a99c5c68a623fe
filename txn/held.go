package txn

import (
	"context"
	"slices"
	"sync"
)

// heldPartitions is what the group last assigned this member, in one
// session, as the member's balancer decodes it: the source of truth for
// which tasks the worker may keep open.
//
// # Why
//
// franz-go's GroupTransactSession passes a revocation on to the worker's
// callback only once per transaction: a second cooperative rebalance that
// takes more partitions before the transaction ends is swallowed (the
// session already aborts that transaction). The worker then kept those
// tasks open, and when the group gave a partition back, resumed its task
// with the state it had before another worker processed the partition
// meanwhile: an enrich table missed the customer updates that worker
// consumed, and orders saw customers go back a version (the chaos suite,
// seed 8086). Each assignment the member decodes tells the whole truth,
// so the partitions missing from it since the last one are revoked here,
// whether the callback comes or not.
type heldPartitions struct {
	w *Worker

	mu    sync.Mutex
	parts map[string][]int32
}

// synced takes the member's new assignment: the partitions it held and
// no longer does are revoked (Worker.onRevoked, which ignores those
// already revoked), and their tasks close after the open transaction.
func (h *heldPartitions) synced(parts map[string][]int32) {
	h.mu.Lock()
	lost := map[string][]int32{}
	for topic, ps := range h.parts {
		for _, p := range ps {
			if !slices.Contains(parts[topic], p) {
				lost[topic] = append(lost[topic], p)
			}
		}
	}
	h.parts = make(map[string][]int32, len(parts))
	for topic, ps := range parts { // franz-go keeps and changes parts
		h.parts[topic] = slices.Clone(ps)
	}
	h.mu.Unlock()
	if len(lost) > 0 {
		h.w.log.Debug("partitions gone from the assignment", "partitions", lost)
		h.w.onRevoked(context.Background(), nil, lost)
	}
}

// forget drops what the member held: the session lost its assignment
// (OnPartitionsLost revoked it all).
func (h *heldPartitions) forget() {
	h.mu.Lock()
	h.parts = nil
	h.mu.Unlock()
}

// has reports whether the member holds partition p of any of topics (a
// task's source topics: it holds all or none).
func (h *heldPartitions) has(topics []string, p int32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range topics {
		if slices.Contains(h.parts[t], p) {
			return true
		}
	}
	return false
}
