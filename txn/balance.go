package txn

import (
	"cmp"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/topology"
)

// taskBalancer assigns the group's partitions by task, as Kafka Streams'
// assignor does: partition p of every source topic of a sub-topology goes
// to one member, so that the member holding a task reads all of its input.
// A partition-by-partition balancer (franz-go's cooperative-sticky) may
// split a task between two members; both then run it, each with half its
// input: a table source on one and the stream joined with it on the other,
// which joins against a table nobody updates.
//
// It is cooperative (KIP-429) and sticky: a task stays with the member
// that owned it while that member is in the group and not above its
// share; the tasks of each sub-topology are spread evenly, ties going to
// the member with the fewest tasks overall. A task that moves is first
// revoked from its owner, and assigned in the rebalance that follows the
// revocation (kgo.BalancePlan.AdjustCooperative). A member is never
// assigned part of a task: if some of a task's partitions must wait for
// another member's revocation, the member gives up the rest too, and gets
// the whole task in the next round.
//
// Join metadata and assignments are those of franz-go's cooperative-sticky
// balancer (kmsg.ConsumerMemberMetadata with owned partitions); only the
// balancing differs, under its own protocol name. A member with an
// advertised address puts it in its metadata's UserData (member.go),
// which the balancing never reads.
type taskBalancer struct {
	kgo.GroupBalancer // metadata and assignment encoding
	groups            [][]string
	// synced, when set, is called on this member with the whole of each
	// assignment the group gives it (ParseSyncAssignment).
	synced func(map[string][]int32)
	// advertise is this member's advertised address ("": none).
	advertise string
}

// newTaskBalancer returns the balancer for the sub-topologies subs: the
// source topics of each are assigned together, partition by partition.
// synced (may be nil) is called with each assignment this member gets.
func newTaskBalancer(subs []topology.Subtopology, synced func(map[string][]int32)) *taskBalancer {
	b := &taskBalancer{GroupBalancer: kgo.CooperativeStickyBalancer(), synced: synced}
	for _, s := range subs {
		b.groups = append(b.groups, slices.Sorted(slices.Values(s.SourceTopics)))
	}
	return b
}

// taskBalancerProtocol is the protocol name of taskBalancer. Every member
// of a group must offer it: a member that only offers another protocol
// cannot join (INCONSISTENT_GROUP_PROTOCOL).
const taskBalancerProtocol = "sluice-task-cooperative"

// ProtocolName implements kgo.GroupBalancer.
func (*taskBalancer) ProtocolName() string { return taskBalancerProtocol }

// IsCooperative implements kgo.GroupBalancer.
func (*taskBalancer) IsCooperative() bool { return true }

// JoinGroupMetadata implements kgo.GroupBalancer: the cooperative-sticky
// metadata, with this member's advertised address in UserData when it
// has one.
func (b *taskBalancer) JoinGroupMetadata(interests []string, current map[string][]int32, generation int32) []byte {
	return withAddress(b.GroupBalancer.JoinGroupMetadata(interests, current, generation), b.advertise)
}

// ParseSyncAssignment implements kgo.GroupBalancer: it decodes this
// member's assignment and hands the whole of it to synced.
func (b *taskBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	parts, err := b.GroupBalancer.ParseSyncAssignment(assignment)
	if err == nil && b.synced != nil {
		b.synced(parts)
	}
	return parts, err
}

// MemberBalancer implements kgo.GroupBalancer.
func (b *taskBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	return cb, cb.MemberTopics(), err
}

// balanceUnit is one task as the balancer sees it: partition p of a group
// of co-partitioned topics.
type balanceUnit struct {
	group     int
	topics    []string // of the group's topics, those with partition p
	partition int32
}

// Balance implements kgo.ConsumerBalancerBalance; topics holds every
// topic some member consumes, with its partition count.
func (b *taskBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	members := cb.Members()
	interests := make([]map[string]bool, len(members))
	// owner[topic][partition]: the member claiming it at the highest
	// generation (a lower claim is stale: KIP-792).
	type claim struct {
		member     int
		generation int32
	}
	owner := map[string]map[int32]claim{}
	for i := range members {
		_, meta := cb.MemberAt(i)
		interests[i] = map[string]bool{}
		for _, t := range meta.Topics {
			interests[i][t] = true
		}
		for _, o := range meta.OwnedPartitions {
			if owner[o.Topic] == nil {
				owner[o.Topic] = map[int32]claim{}
			}
			for _, p := range o.Partitions {
				if c, ok := owner[o.Topic][p]; !ok || meta.Generation > c.generation {
					owner[o.Topic][p] = claim{i, meta.Generation}
				}
			}
		}
	}

	units := b.units(topics, interests)
	// A unit's previous owner: the member owning most of its partitions.
	prev := make([]int, len(units))
	for u, unit := range units {
		prev[u] = -1
		held := make([]int, len(members))
		for _, t := range unit.topics {
			if c, ok := owner[t][unit.partition]; ok {
				held[c.member]++
			}
		}
		for m, n := range held {
			if n > 0 && (prev[u] < 0 || n > held[prev[u]]) {
				prev[u] = m
			}
		}
	}

	eligible := func(m int, unit balanceUnit) bool {
		for _, t := range unit.topics {
			if !interests[m][t] {
				return false
			}
		}
		return true
	}
	assigned := make([]int, len(units))
	total := make([]int, len(members))
	byGroup := make([][]int, len(b.groups)+1)
	for u, unit := range units {
		byGroup[unit.group] = append(byGroup[unit.group], u)
	}
	// The groups fewer members can take go first, so that the others
	// then even out the members' totals.
	takers := func(us []int) int {
		n := 0
		for m := range members {
			if len(us) > 0 && eligible(m, units[us[0]]) {
				n++
			}
		}
		return n
	}
	slices.SortStableFunc(byGroup, func(x, y []int) int { return cmp.Compare(takers(x), takers(y)) })
	for _, us := range byGroup {
		b.balanceGroup(us, units, prev, assigned, total, eligible)
	}

	plan := cb.NewPlan()
	for u, unit := range units {
		if m := assigned[u]; m >= 0 {
			for _, t := range unit.topics {
				plan.AddPartition(&members[m], t, unit.partition)
			}
		}
	}
	plan.AdjustCooperative(cb)
	wholeTasksOnly(plan, units)
	return plan
}

// units returns the tasks to assign: each partition of each group of
// topics. A topic some member consumes that is in no group, or in a group
// no member consumes all of (members running different topologies), is
// balanced on its own, partition by partition (units of group
// len(b.groups)).
func (b *taskBalancer) units(topics map[string]int32, interests []map[string]bool) []balanceUnit {
	var units []balanceUnit
	grouped := map[string]bool{}
	for g, group := range b.groups {
		whole := false
		for _, in := range interests {
			whole = whole || !slices.ContainsFunc(group, func(t string) bool { return topics[t] > 0 && !in[t] })
		}
		if !whole {
			continue
		}
		var most int32
		for _, t := range group {
			grouped[t] = true
			most = max(most, topics[t])
		}
		for p := range most {
			u := balanceUnit{group: g, partition: p}
			for _, t := range group {
				if p < topics[t] {
					u.topics = append(u.topics, t)
				}
			}
			units = append(units, u)
		}
	}
	for _, t := range slices.Sorted(func(yield func(string) bool) {
		for t := range topics {
			if !grouped[t] && !yield(t) {
				return
			}
		}
	}) {
		for p := range topics[t] {
			units = append(units, balanceUnit{group: len(b.groups), topics: []string{t}, partition: p})
		}
	}
	return units
}

// balanceGroup assigns the units us of one group (indexes into units):
// each eligible member gets an even share, keeping what it owned (prev)
// up to its share. assigned[u] receives the member (-1: none eligible);
// total counts each member's units over all groups.
func (*taskBalancer) balanceGroup(us []int, units []balanceUnit, prev, assigned, total []int, eligible func(int, balanceUnit) bool) {
	count := make([]int, len(total))
	shares := make([]int, len(total))
	for m := range shares {
		shares[m] = share(us, units, m, len(total), eligible)
	}
	var free []int
	// Keep pass: a unit stays with its previous owner while that owner
	// is below the even share of the members eligible for it.
	for _, u := range us {
		assigned[u] = -1
		m := prev[u]
		if m < 0 || !eligible(m, units[u]) || count[m] >= shares[m] {
			free = append(free, u)
			continue
		}
		assigned[u], count[m], total[m] = m, count[m]+1, total[m]+1
	}
	// Place pass: each free unit goes to the eligible member with the
	// fewest units of the group, then overall, then the first.
	for _, u := range free {
		best := -1
		for m := range total {
			if !eligible(m, units[u]) {
				continue
			}
			if best < 0 || cmp.Or(cmp.Compare(count[m], count[best]), cmp.Compare(total[m], total[best])) < 0 {
				best = m
			}
		}
		if best >= 0 {
			assigned[u], count[best], total[best] = best, count[best]+1, total[best]+1
		}
	}
	// Even out: the keep pass may leave one member two or more above
	// another (a share rounds up); move units from the fullest member to
	// the emptiest until they are within one.
	takes := make([]bool, len(count)) // eligible for a unit of the group
	for _, u := range us {
		for m := range takes {
			takes[m] = takes[m] || eligible(m, units[u])
		}
	}
	for {
		lo, hi := -1, -1
		for m := range count {
			if !takes[m] {
				continue
			}
			if lo < 0 || count[m] < count[lo] {
				lo = m
			}
			if hi < 0 || count[m] > count[hi] {
				hi = m
			}
		}
		if lo < 0 || count[hi]-count[lo] <= 1 {
			return
		}
		moved := false
		for i := len(us) - 1; i >= 0; i-- {
			if u := us[i]; assigned[u] == hi && eligible(lo, units[u]) {
				assigned[u] = lo
				count[hi], count[lo] = count[hi]-1, count[lo]+1
				total[hi], total[lo] = total[hi]-1, total[lo]+1
				moved = true
				break
			}
		}
		if !moved {
			return // members with different interests: as even as they allow
		}
	}
}

// share returns the most units of us member m keeps (of members): the
// units eligible for it divided among the members eligible for them,
// rounded up.
func share(us []int, units []balanceUnit, m, members int, eligible func(int, balanceUnit) bool) int {
	var n int
	others := map[int]bool{}
	for _, u := range us {
		if !eligible(m, units[u]) {
			continue
		}
		n++
		for o := range members {
			if eligible(o, units[u]) {
				others[o] = true
			}
		}
	}
	members = len(others)
	if members == 0 {
		return 0
	}
	return (n + members - 1) / members
}

// wholeTasksOnly removes from the plan every partition of a task some of
// whose partitions it no longer assigns to that member (withheld by
// AdjustCooperative until another member revokes them): the member
// revokes the rest, and is assigned the whole task in the next round.
func wholeTasksOnly(plan *kgo.BalancePlan, units []balanceUnit) {
	for _, topics := range plan.AsMemberIDMap() {
		for _, unit := range units {
			have := 0
			for _, t := range unit.topics {
				if slices.Contains(topics[t], unit.partition) {
					have++
				}
			}
			if have == 0 || have == len(unit.topics) {
				continue
			}
			for _, t := range unit.topics {
				topics[t] = slices.DeleteFunc(topics[t], func(p int32) bool { return p == unit.partition })
				if len(topics[t]) == 0 {
					delete(topics, t)
				}
			}
		}
	}
}
