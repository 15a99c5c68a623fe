package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/txn/topology"
)

// CreateTopics creates what a worker of topo needs and does not create
// itself, its missing source and sink topics, with partitions partitions
// and replication replicas each (-1: the brokers' default replication
// factor); then, as a worker's start does, it checks that co-partitioned
// sources have the same partition count and creates the missing internal
// topics, with replication replicas too (Config.ReplicationFactor). Topics
// that exist are left as they are. It returns the topics it created,
// sorted.
//
// Topics that global tables read are not created (Topology reports only
// the sources of its sub-topologies); nor is any topic compacted: a table's
// source topic should be (cleanup.policy=compact), and is not checked.
// opts are added to the admin client's options.
func CreateTopics(ctx context.Context, topo topology.Topology, brokers []string, partitions int32, replication int16, opts ...kgo.Opt) ([]string, error) {
	if partitions <= 0 {
		return nil, fmt.Errorf("txn: create topics: %d partitions: need at least 1", partitions)
	}
	if replication == 0 || replication < -1 {
		return nil, fmt.Errorf("txn: create topics: replication factor %d: need at least 1, or -1 for the brokers' default", replication)
	}
	// A client lists a topic it was told is unknown as unknown for a
	// while: each step asks with a client of its own.
	admin := func() (*kadm.Client, func(), error) {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("txn: create topics: %w", err)
		}
		return kadm.NewClient(cl), cl.Close, nil
	}
	internal := internalNames(topo)
	var wanted []string
	for _, s := range topo.Subtopologies() {
		for _, t := range s.SourceTopics {
			if !slices.Contains(internal, t) {
				wanted = append(wanted, t)
			}
		}
	}
	wanted = append(wanted, topo.SinkTopics()...)
	slices.Sort(wanted)
	wanted = slices.Compact(wanted)

	adm, done, err := admin()
	if err != nil {
		return nil, err
	}
	defer done()
	before, err := adm.ListTopics(ctx, internal...)
	if err != nil {
		return nil, fmt.Errorf("txn: create topics: list topics: %w", err)
	}
	var created []string
	resps, err := adm.CreateTopics(ctx, partitions, replication, nil, wanted...)
	if err != nil {
		return nil, fmt.Errorf("txn: create topics: %w", err)
	}
	var errs []error
	for _, r := range resps.Sorted() {
		switch {
		case r.Err == nil:
			created = append(created, r.Topic)
		case errors.Is(r.Err, kerr.InvalidReplicationFactor):
			errs = append(errs, fmt.Errorf("txn: create topic %q with replication factor %s: %w %s: the cluster has fewer brokers, or its minimum is higher", r.Topic, replicationName(replication), r.Err, r.ErrMessage))
		case !errors.Is(r.Err, kerr.TopicAlreadyExists):
			errs = append(errs, fmt.Errorf("txn: create topic %q: %w", r.Topic, r.Err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	adm, done, err = admin()
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := prepareTopics(ctx, adm, topo, topo.SinkTopics(), replication); err != nil {
		return nil, err
	}
	for _, t := range internal {
		if d, ok := before[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			created = append(created, t)
		}
	}
	slices.Sort(created)
	return created, nil
}

// ResetApp makes topo's app start over from its input, as Kafka Streams'
// application reset tool does: it deletes the app's group (the app id),
// and with it every committed offset, so that workers start again at the
// start of their sources; and its changelog and repartition topics, which
// the next worker re-creates empty. Its DLQ, its sink topics and its
// input are left as they are; so is local state, which a caller removes
// (workers restore from the changelogs otherwise: state and changelogs
// would disagree). It refuses while the group has members, naming them.
// It returns the topics it deleted.
func ResetApp(ctx context.Context, topo topology.Topology, brokers []string, opts ...kgo.Opt) ([]string, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("txn: reset: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	group := topo.AppID()
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("txn: reset: describe group %s: %w", group, err)
	}
	if g, ok := described[group]; ok && len(g.Members) > 0 {
		var members []string
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			members = append(members, fmt.Sprintf("%s on %s", id, m.ClientHost))
		}
		return nil, fmt.Errorf("txn: reset: workers of %s are still running (%s): stop them first", group, strings.Join(members, ", "))
	}
	if _, err := adm.DeleteGroup(ctx, group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("txn: reset: delete group %s: %w", group, err)
	}
	var doomed []string
	for _, it := range topo.InternalTopics() {
		if it.Purpose == "changelog" || it.Purpose == "repartition" {
			doomed = append(doomed, it.Name)
		}
	}
	var deleted []string
	if len(doomed) > 0 {
		resps, err := adm.DeleteTopics(ctx, doomed...)
		if err != nil {
			return nil, fmt.Errorf("txn: reset: delete topics: %w", err)
		}
		var errs []error
		for _, r := range resps.Sorted() {
			switch {
			case r.Err == nil:
				deleted = append(deleted, r.Topic)
			case !errors.Is(r.Err, kerr.UnknownTopicOrPartition):
				errs = append(errs, fmt.Errorf("txn: reset: delete topic %q: %w", r.Topic, r.Err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return deleted, err
		}
	}
	slices.Sort(deleted)
	return deleted, nil
}
