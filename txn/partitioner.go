package txn

import (
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitioner sends records of internal per-task topics (changelogs) to the
// partition the task set on the record, and everything else by key like
// Kafka's default partitioner.
type partitioner struct {
	manual map[string]bool
	byKey  kgo.Partitioner
}

func newPartitioner(topo topology.Topology) kgo.Partitioner {
	p := &partitioner{manual: map[string]bool{}, byKey: kgo.StickyKeyPartitioner(nil)}
	for _, it := range topo.InternalTopics() {
		if it.Purpose == "changelog" {
			p.manual[it.Name] = true
		}
	}
	return p
}

func (p *partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if p.manual[topic] {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.byKey.ForTopic(topic)
}
