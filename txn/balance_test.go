package txn

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/txn/topology"
)

// balanceMember is a group member as the balancer test drives it: what it
// consumes, what it owns, and the generation it owns it at.
type balanceMember struct {
	id         string
	topics     []string
	owned      map[string][]int32
	generation int32
}

// balanceRound runs the leader's balance over ms and returns each
// member's assignment.
func balanceRound(t *testing.T, b kgo.GroupBalancer, ms []*balanceMember, partitions map[string]int32) map[string]map[string][]int32 {
	t.Helper()
	var join []kmsg.JoinGroupResponseMember
	for _, m := range ms {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		topics := slices.Sorted(slices.Values(m.topics))
		jm.ProtocolMetadata = b.JoinGroupMetadata(topics, m.owned, m.generation)
		join = append(join, jm)
	}
	mb, _, err := b.MemberBalancer(join)
	require.NoError(t, err)
	into, err := mb.(*kgo.ConsumerBalancer).BalanceOrError(partitions)
	require.NoError(t, err)
	out := map[string]map[string][]int32{}
	for _, a := range into.IntoSyncAssignment() {
		got, err := b.ParseSyncAssignment(a.MemberAssignment)
		require.NoError(t, err)
		out[a.MemberID] = got
	}
	return out
}

// enrichGroups is the shape of the enrich app: a stream sub-topology and
// a table joined with a repartition topic.
var enrichGroups = []topology.Subtopology{
	{ID: 0, SourceTopics: []string{"customers", "repartition"}},
	{ID: 1, SourceTopics: []string{"orders"}},
}

// requireWholeTasks fails unless every member holds, of each task, all
// its partitions or none.
func requireWholeTasks(t *testing.T, plan map[string]map[string][]int32, partitions map[string]int32) {
	t.Helper()
	for member, topics := range plan {
		for p := range partitions["customers"] {
			c := slices.Contains(topics["customers"], p)
			r := slices.Contains(topics["repartition"], p)
			require.Equal(t, c, r, "member %s holds half of task 0_%d: %v", member, p, topics)
		}
	}
}

// A fresh group gets every task whole, each sub-topology spread evenly.
func TestTaskBalancerAssignsWholeTasksEvenly(t *testing.T) {
	b := newTaskBalancer(enrichGroups, nil)
	partitions := map[string]int32{"customers": 8, "repartition": 8, "orders": 8}
	var ms []*balanceMember
	for i := range 3 {
		ms = append(ms, &balanceMember{id: fmt.Sprintf("m%d", i), topics: []string{"customers", "orders", "repartition"}})
	}
	plan := balanceRound(t, b, ms, partitions)
	requireWholeTasks(t, plan, partitions)
	for _, topic := range []string{"customers", "orders"} {
		var all []int32
		for _, m := range ms {
			n := len(plan[m.id][topic])
			require.True(t, n == 2 || n == 3, "%s: %d of 8 %s partitions", m.id, n, topic)
			all = append(all, plan[m.id][topic]...)
		}
		slices.Sort(all)
		require.Equal(t, []int32{0, 1, 2, 3, 4, 5, 6, 7}, all, topic)
	}
	var totals []int
	for _, m := range ms {
		totals = append(totals, len(plan[m.id]["customers"])+len(plan[m.id]["orders"]))
	}
	require.LessOrEqual(t, slices.Max(totals)-slices.Min(totals), 1, "tasks per member: %v", totals)
}

// A member that holds half of a task (a split left by another balancer)
// gives it up: no member is assigned part of a task, and the next round,
// once the halves are revoked, assigns it whole. franz-go's
// cooperative-sticky balancer keeps such a split as it is.
func TestTaskBalancerMendsASplitTask(t *testing.T) {
	b := newTaskBalancer(enrichGroups, nil)
	partitions := map[string]int32{"customers": 2, "repartition": 2, "orders": 2}
	all := []string{"customers", "orders", "repartition"}
	a := &balanceMember{id: "a", topics: all, generation: 5, owned: map[string][]int32{"customers": {0}, "repartition": {1}, "orders": {0}}}
	c := &balanceMember{id: "c", topics: all, generation: 5, owned: map[string][]int32{"customers": {1}, "repartition": {0}, "orders": {1}}}
	ms := []*balanceMember{a, c}
	plan := balanceRound(t, b, ms, partitions)
	requireWholeTasks(t, plan, partitions)
	for _, m := range ms {
		require.Empty(t, plan[m.id]["customers"], "%s keeps a table partition whose task it does not hold whole", m.id)
	}
	// The members revoke what they lost and rejoin.
	for _, m := range ms {
		m.owned, m.generation = plan[m.id], 6
	}
	plan = balanceRound(t, b, ms, partitions)
	requireWholeTasks(t, plan, partitions)
	require.ElementsMatch(t, []int32{0, 1}, append(slices.Clone(plan["a"]["customers"]), plan["c"]["customers"]...))

	kept := balanceRound(t, kgo.CooperativeStickyBalancer(), []*balanceMember{
		{id: "a", topics: all, generation: 5, owned: map[string][]int32{"customers": {0}, "repartition": {1}, "orders": {0}}},
		{id: "c", topics: all, generation: 5, owned: map[string][]int32{"customers": {1}, "repartition": {0}, "orders": {1}}},
	}, partitions)
	require.Equal(t, []int32{0}, kept["a"]["customers"], "cooperative-sticky keeps the split")
	require.Equal(t, []int32{1}, kept["a"]["repartition"], "cooperative-sticky keeps the split")
}

// Members join, leave and rejoin at random, each revoking what it lost
// and rejoining, as KIP-429 has it. In every round, each member holds
// whole tasks, and no partition is assigned to a member while another
// still owns it. Once the group is stable, each sub-topology is even, and
// a member that joins takes tasks from the others without moving any
// other task.
func TestTaskBalancerCooperativeRounds(t *testing.T) {
	b := newTaskBalancer(enrichGroups, nil)
	partitions := map[string]int32{"customers": 12, "repartition": 12, "orders": 12}
	all := []string{"customers", "orders", "repartition"}
	rng := rand.New(rand.NewPCG(7, 11))
	var ms []*balanceMember
	gen := int32(1)
	// settle runs rounds until no member loses or gains anything.
	settle := func() {
		for round := 0; ; round++ {
			require.Less(t, round, 10, "the group does not settle")
			plan := balanceRound(t, b, ms, partitions)
			requireWholeTasks(t, plan, partitions)
			changed := false
			for _, m := range ms {
				for topic, ps := range plan[m.id] {
					for _, p := range ps {
						if slices.Contains(m.owned[topic], p) {
							continue
						}
						for _, o := range ms {
							require.False(t, o != m && slices.Contains(o.owned[topic], p),
								"%s[%d] assigned to %s while %s owns it", topic, p, m.id, o.id)
						}
					}
				}
				if fmt.Sprint(normalize(plan[m.id])) != fmt.Sprint(normalize(m.owned)) {
					changed = true
				}
			}
			for _, m := range ms {
				m.owned, m.generation = plan[m.id], gen
			}
			gen++
			if !changed {
				return
			}
		}
	}
	for step := range 40 {
		switch {
		case len(ms) < 2 || len(ms) < 5 && rng.IntN(2) == 0:
			ms = append(ms, &balanceMember{id: fmt.Sprintf("m%02d", step), topics: all})
		default:
			i := rng.IntN(len(ms))
			ms = slices.Delete(ms, i, i+1)
		}
		if len(ms) == 0 {
			continue
		}
		before := map[string]map[string][]int32{}
		for _, m := range ms {
			before[m.id] = normalize(m.owned)
		}
		settle()
		for _, topic := range []string{"customers", "orders"} {
			var counts []int
			for _, m := range ms {
				counts = append(counts, len(m.owned[topic]))
			}
			require.LessOrEqual(t, slices.Max(counts)-slices.Min(counts), 1, "step %d: %s per member %v", step, topic, counts)
		}
		// Stickiness: nothing moves between two members that were both
		// in the group before and after.
		for _, m := range ms {
			for topic, ps := range m.owned {
				for _, p := range ps {
					for _, o := range ms {
						require.False(t, o != m && slices.Contains(before[o.id][topic], p) && len(before[m.id]) > 0,
							"step %d: %s[%d] moved from %s to %s", step, topic, p, o.id, m.id)
					}
				}
			}
		}
	}
}

// normalize returns a copy of an assignment with sorted partitions and
// no empty topic.
func normalize(a map[string][]int32) map[string][]int32 {
	out := map[string][]int32{}
	for topic, ps := range a {
		if len(ps) > 0 {
			out[topic] = slices.Sorted(slices.Values(ps))
		}
	}
	return out
}

// Members running different topologies (a rolling deploy that adds a
// source): a task goes only to a member that consumes all its topics,
// and a group of topics no member consumes whole is balanced partition
// by partition, so that nothing is left unassigned.
func TestTaskBalancerMembersOfDifferentTopologies(t *testing.T) {
	b := newTaskBalancer(enrichGroups, nil)
	partitions := map[string]int32{"customers": 4, "repartition": 4, "orders": 4}
	ms := []*balanceMember{
		{id: "a", topics: []string{"customers", "orders", "repartition"}},
		{id: "b", topics: []string{"customers", "repartition"}},
		{id: "c", topics: []string{"customers", "repartition"}},
	}
	plan := balanceRound(t, b, ms, partitions)
	requireWholeTasks(t, plan, partitions)
	require.Equal(t, []int32{0, 1, 2, 3}, normalize(plan["a"])["orders"], "only a consumes orders")
	var tables []int
	for _, m := range ms {
		tables = append(tables, len(plan[m.id]["customers"]))
	}
	require.ElementsMatch(t, []int{1, 1, 2}, tables, "customers tasks spread over all three, a holding orders too: %v", tables)
	require.Equal(t, 1, len(plan["a"]["customers"]), "a holds the most tasks already")

	// No member consumes both customers and repartition.
	ms = []*balanceMember{
		{id: "a", topics: []string{"customers", "orders"}},
		{id: "b", topics: []string{"repartition"}},
	}
	plan = balanceRound(t, b, ms, partitions)
	require.Equal(t, []int32{0, 1, 2, 3}, normalize(plan["a"])["customers"])
	require.Equal(t, []int32{0, 1, 2, 3}, normalize(plan["b"])["repartition"])
	require.Equal(t, []int32{0, 1, 2, 3}, normalize(plan["a"])["orders"])
}
