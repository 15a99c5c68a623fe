package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// layout is what the worker learned about the cluster's topics at start.
type layout struct {
	partitions map[string]int32 // every source, sink and internal topic
	maxBytes   map[string]int   // sinks and internal topics: max.message.bytes
}

// defaultMaxMessageBytes is Kafka's default max.message.bytes, used when a
// broker does not report the topic's value.
const defaultMaxMessageBytes = 1048588

// prepareTopics checks that every source and sink topic exists, that the
// sources of each sub-topology are co-partitioned, creates missing internal
// topics (with replication replicas each, -1 for the brokers' default) and
// validates existing ones, and reads max.message.bytes of every topic the
// topology writes. Each error says what to fix.
func prepareTopics(ctx context.Context, adm *kadm.Client, topo topology.Topology, sinks []string, replication int16) (*layout, error) {
	internal := map[string]topology.InternalTopic{}
	for _, it := range topo.InternalTopics() {
		internal[it.Name] = it
	}
	var sources, external []string
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			if _, ok := internal[t]; !ok {
				sources = append(sources, t)
			}
		}
	}
	external = slices.Concat(sources, sinks)
	details, err := adm.ListTopics(ctx, external...)
	if err != nil {
		return nil, fmt.Errorf("txn: list topics: %w", err)
	}
	l := &layout{partitions: map[string]int32{}, maxBytes: map[string]int{}}
	var errs []error
	for _, topic := range external {
		d, ok := details[topic]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			role := "source"
			if !slices.Contains(sources, topic) {
				role = "sink"
			}
			errs = append(errs, fmt.Errorf("txn: %s topic %q does not exist: create it before starting the app", role, topic))
		case d.Err != nil:
			errs = append(errs, fmt.Errorf("txn: topic %q: %w", topic, d.Err))
		default:
			l.partitions[topic] = int32(len(d.Partitions))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	subPartitions, maxSource := internalPartitions(topo, internal, l)
	for _, s := range topo.Subtopologies() {
		first := s.SourceTopics[0]
		for _, topic := range s.SourceTopics[1:] {
			if got, want := l.partitions[topic], l.partitions[first]; got != want {
				errs = append(errs, fmt.Errorf("txn: sub-topology %d reads %q (%d partitions) and %q (%d partitions): co-partitioned topics (merged, or joined: stream-table, stream-stream, table-table) need the same partition count; repartition one of them (Stream.Repartition) or recreate it with %d partitions",
					s.ID, first, want, topic, got, want))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ensureInternal(ctx, adm, topo.InternalTopics(), subPartitions, maxSource, replication, l); err != nil {
		return nil, err
	}
	written := slices.Concat(sinks, internalNames(topo))
	configs, err := adm.DescribeTopicConfigs(ctx, written...)
	if err != nil {
		return nil, fmt.Errorf("txn: describe topic configs: %w", err)
	}
	for _, topic := range written {
		l.maxBytes[topic] = defaultMaxMessageBytes
		rc, err := configs.On(topic, nil)
		if err != nil || rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && c.Value != nil {
				if n, err := strconv.Atoi(*c.Value); err == nil {
					l.maxBytes[topic] = n
				}
			}
		}
	}
	return l, nil
}

// internalPartitions works out the partition count of every sub-topology
// and records that of internal source topics in l. A sub-topology reading
// external topics has their count; one reading only repartition topics has
// the count of the sub-topology that writes them, found by propagating
// until nothing changes.
func internalPartitions(topo topology.Topology, internal map[string]topology.InternalTopic, l *layout) (map[int]int32, int32) {
	subs := map[int]int32{}
	var maxSource int32
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			if n, ok := l.partitions[t]; ok {
				subs[s.ID] = n
				maxSource = max(maxSource, n)
				break
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for _, s := range topo.Subtopologies() {
			for _, t := range s.SourceTopics {
				it, ok := internal[t]
				if !ok {
					continue
				}
				n, known := subs[it.Subtopology]
				if !known {
					continue
				}
				if _, have := l.partitions[t]; !have {
					l.partitions[t] = n
					changed = true
				}
				if _, have := subs[s.ID]; !have {
					subs[s.ID] = n
					changed = true
				}
			}
		}
	}
	return subs, maxSource
}

func internalNames(topo topology.Topology) []string {
	var names []string
	for _, it := range topo.InternalTopics() {
		names = append(names, it.Name)
	}
	return names
}

// ensureInternal creates missing internal topics, with replication replicas
// each (-1: the brokers' default), and checks the partition count of
// existing ones: that of the sub-topology the topic belongs to, or the
// largest source partition count.
func ensureInternal(ctx context.Context, adm *kadm.Client, topics []topology.InternalTopic, subPartitions map[int]int32, maxSource int32, replication int16, l *layout) error {
	if len(topics) == 0 {
		return nil
	}
	details, err := adm.ListTopics(ctx, internalNamesOf(topics)...)
	if err != nil {
		return fmt.Errorf("txn: list internal topics: %w", err)
	}
	var errs []error
	for _, it := range topics {
		want, ok := subPartitions[it.Subtopology]
		if !ok {
			want = maxSource
		}
		if d, ok := details[it.Name]; ok && d.Err == nil {
			if got := int32(len(d.Partitions)); got != want {
				errs = append(errs, fmt.Errorf("txn: internal %s topic %q has %d partitions, the topology needs %d: delete it (it is recreated) or recreate it with %d partitions",
					it.Purpose, it.Name, got, want, want))
			}
			l.partitions[it.Name] = want
			continue
		}
		configs := map[string]*string{}
		for k, v := range it.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopic(ctx, want, replication, configs, it.Name)
		switch {
		case errors.Is(err, kerr.InvalidReplicationFactor):
			errs = append(errs, fmt.Errorf("txn: create internal %s topic %q with replication factor %s: %w %s: the cluster has fewer brokers, or its minimum is higher (runner: --replication-factor)",
				it.Purpose, it.Name, replicationName(replication), err, resp.ErrMessage))
			continue
		case err != nil && !errors.Is(err, kerr.TopicAlreadyExists):
			errs = append(errs, fmt.Errorf("txn: create internal %s topic %q: %w %s", it.Purpose, it.Name, err, resp.ErrMessage))
			continue
		}
		l.partitions[it.Name] = want
	}
	return errors.Join(errs...)
}

// replicationName says what a replication factor given to CreateTopics
// asks for.
func replicationName(replication int16) string {
	if replication < 0 {
		return "the brokers' default"
	}
	return strconv.Itoa(int(replication))
}

// replicationOf is Config.ReplicationFactor as CreateTopics takes it: -1
// for the brokers' default.
func replicationOf(factor int) int16 {
	if factor <= 0 {
		return -1
	}
	return int16(factor)
}

func internalNamesOf(topics []topology.InternalTopic) []string {
	names := make([]string, len(topics))
	for i, it := range topics {
		names[i] = it.Name
	}
	return names
}
