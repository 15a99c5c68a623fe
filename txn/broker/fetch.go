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
// bound keeps its list. So that a response still holds about what the
// client asked for, when the partitions the request names may together
// return more than its MaxBytes, each one's limit becomes its share of
// MaxBytes (never less than minShare): a worker asking for 1 MiB from 8
// busy partitions gets about 1 MiB, 128 KiB of each, not 8 MiB, which it
// would decode and hold (records, not bytes, fill its memory). A
// partition whose next batch exceeds its share returns it only when it
// comes first in the request, as on Kafka (KIP-74); clients rotate the
// order of partitions. Tiny limits (tests that cut at every batch) are
// left as they are: a response then holds up to PartitionMaxBytes (at
// least one batch) of every partition with records. read_uncommitted
// fetches are left alone: they need no list.
func uncutFetches(cluster *kfake.Cluster) {
	cluster.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		uncut(req.(*kmsg.FetchRequest))
		return nil, nil, false
	})
}

// minShare is the least a partition's limit is lowered to by uncut.
const minShare = 64 << 10

// uncut lifts the response-wide byte limit of a read_committed fetch, and
// shares it among the partitions the request names.
func uncut(req *kmsg.FetchRequest) {
	if req.IsolationLevel != isolationReadCommitted {
		return
	}
	var n, sum int64
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			n++
			sum += int64(p.PartitionMaxBytes)
		}
	}
	if sum > int64(req.MaxBytes) {
		share := max(req.MaxBytes/int32(n), minShare)
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				p := &req.Topics[i].Partitions[j]
				p.PartitionMaxBytes = min(p.PartitionMaxBytes, share)
			}
		}
	}
	req.MaxBytes = math.MaxInt32
}
