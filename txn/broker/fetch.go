package broker

import (
	"math"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// isolationReadCommitted is the isolation level of a read_committed fetch.
const isolationReadCommitted = 1

// uncutFetches makes the embedded broker answer a read_committed fetch the
// way Kafka does: every partition that returns records returns with them
// the aborted transactions they overlap.
//
// # Why
//
// A read_committed client drops the records of aborted transactions by the
// list of them that the broker sends with each partition. kfake fills a
// response partition by partition and, when the request's MaxBytes is
// reached partway through a partition, stops there without attaching that
// partition's list; its records still go out. A client that follows the
// protocol then delivers the aborted records as committed. With 1 MB
// fetches this happened whenever one partition filled a response: after a
// rebalance a worker that read a repartition topic from its committed
// offset processed the aborted copies of records as well as the committed
// ones.
//
// # How
//
// It raises a read_committed request's MaxBytes so that kfake never stops
// partway through a partition for it. Each partition is still bounded by
// its own PartitionMaxBytes, and a partition that kfake stops for that
// bound keeps its list. A response can therefore exceed the request's
// MaxBytes: it holds up to PartitionMaxBytes (at least one batch) of every
// partition with records, as a Kafka response would if the request's
// MaxBytes were the sum of those. read_uncommitted fetches are left alone:
// they need no list.
func uncutFetches(cluster *kfake.Cluster) {
	cluster.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		uncut(req.(*kmsg.FetchRequest))
		return nil, nil, false
	})
}

// uncut lifts the response-wide byte limit of a read_committed fetch.
func uncut(req *kmsg.FetchRequest) {
	if req.IsolationLevel == isolationReadCommitted {
		req.MaxBytes = math.MaxInt32
	}
}
