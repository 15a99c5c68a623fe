package stream

import (
	"fmt"
	"slices"
	"strings"
)

// Describe returns a human-readable description of the topology in the
// shape of Kafka Streams' TopologyDescription: each sub-topology with its
// sources, processors and sinks and their edges, the stores each uses (a
// join lists the store of the table it reads), then the internal topics.
func (t *Topology) Describe() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Topology: %s (errors: %s)\n", t.appID, t.policy)
	for _, sub := range t.subs {
		fmt.Fprintf(&sb, "  Sub-topology: %d\n", sub.ID)
		for _, n := range t.nodes {
			if n.sub != sub.ID {
				continue
			}
			switch n.kind {
			case kindSource:
				fmt.Fprintf(&sb, "    Source: %s (topics: [%s])", n.name, strings.Join(n.topics, ", "))
				if len(n.stores) > 0 {
					fmt.Fprintf(&sb, " (table, stores: %s)", storeNames(n.stores))
				}
				sb.WriteString("\n")
			case kindSink:
				fmt.Fprintf(&sb, "    Sink: %s (topic: %s)\n", n.name, strings.Join(n.topics, ", "))
			default:
				fmt.Fprintf(&sb, "    Processor: %s (%s)", n.name, n.op)
				if stores := append(slices.Clip(n.stores), n.reads...); len(stores) > 0 {
					fmt.Fprintf(&sb, " (stores: %s)", storeNames(stores))
				}
				sb.WriteString("\n")
			}
			if len(n.children) > 0 {
				fmt.Fprintf(&sb, "      --> %s\n", names(n.children))
			}
			if len(n.parents) > 0 {
				fmt.Fprintf(&sb, "      <-- %s\n", names(n.parents))
			}
		}
	}
	if len(t.globals) > 0 {
		sb.WriteString("  Global tables (every worker holds all partitions):\n")
		for _, g := range t.globals {
			fmt.Fprintf(&sb, "    %s (topic: %s)\n", g.name, g.topic)
		}
	}
	if its := t.InternalTopics(); len(its) > 0 {
		sb.WriteString("  Internal topics:\n")
		for _, it := range its {
			fmt.Fprintf(&sb, "    %s (%s)\n", it.Name, it.Purpose)
		}
	}
	return sb.String()
}

func names(ns []*node) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.name
	}
	return strings.Join(s, ", ")
}
