package txn

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/topology"
)

// partitionCheck finds records of co-partitioned source topics that do not
// sit on the partition Kafka's default partitioner (murmur2 of the key)
// gives their key. A task joins partition p of each of its source topics
// with the others' partition p; a topic written with another partitioner
// (librdkafka's default is CRC32) puts most keys elsewhere, and the join
// misses them without any error. Only topics that share a sub-topology
// with another are checked (a lone source may be partitioned any way);
// repartition topics are left out, as sluice writes them itself. Records
// without a key are not checked.
//
// It is safe for concurrent use (the poll loop and restores).
type partitionCheck struct {
	topics map[string]*checkedTopic
}

type checkedTopic struct {
	partitions int
	byKey      kgo.TopicPartitioner
	warned     atomic.Bool
}

// newPartitionCheck returns the check of topo's co-partitioned external
// source topics; partitions holds every topic's partition count.
func newPartitionCheck(topo topology.Topology, partitions map[string]int32) *partitionCheck {
	internal := map[string]bool{}
	for _, it := range topo.InternalTopics() {
		internal[it.Name] = true
	}
	c := &partitionCheck{topics: map[string]*checkedTopic{}}
	for _, sub := range topo.Subtopologies() {
		if len(sub.SourceTopics) < 2 {
			continue
		}
		for _, t := range sub.SourceTopics {
			if n := partitions[t]; !internal[t] && n > 1 {
				c.topics[t] = &checkedTopic{partitions: int(n), byKey: kgo.StickyKeyPartitioner(nil).ForTopic(t)}
			}
		}
	}
	return c
}

// check returns, for a record that sits on a partition other than its
// key's, the partition its key belongs on, and whether this is the first
// such record of its topic; want is -1 for a record in its place.
func (c *partitionCheck) check(r *kgo.Record) (want int32, first bool) {
	t := c.topics[r.Topic]
	if t == nil || r.Key == nil {
		return -1, false
	}
	if p := int32(t.byKey.Partition(r, t.partitions)); p != r.Partition {
		return p, !t.warned.Swap(true)
	}
	return -1, false
}

// checkPartitioning counts each record of f that sits on the wrong
// partition and warns at the first of each topic, saying what to fix.
func (w *Worker) checkPartitioning(f kgo.Fetches) {
	if w.partitions == nil || len(w.partitions.topics) == 0 {
		return
	}
	f.EachPartition(func(p kgo.FetchTopicPartition) {
		if w.partitions.topics[p.Topic] == nil {
			return
		}
		for _, r := range p.Records {
			w.checkRecord(r, "")
		}
	})
}

// checkRecord is checkPartitioning for one record; task names the task
// restoring it ("" while processing).
func (w *Worker) checkRecord(r *kgo.Record, task string) {
	want, first := w.partitions.check(r)
	if want < 0 {
		return
	}
	w.m.mispartitioned.Inc()
	if first {
		args := []any{"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "key", string(r.Key), "key_partition", want,
			"count", "sluice_records_mispartitioned_total"}
		if task != "" {
			args = append(args, "restoring_task", task)
		}
		w.log.Warn("a record is not on the partition Kafka's default partitioner (murmur2 of the key) gives its key: the topic is joined partition by partition, so records like it are joined with the wrong partition's data, without an error. Produce it with a murmur2 partitioner (librdkafka and kcat: partitioner=murmur2_random; Java and franz-go: the default) and rewrite it", args...)
	}
}
