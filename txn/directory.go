package txn

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// directory tells which member of the group holds a task and where that
// member is reached, for a query of a key this worker does not hold. It
// asks the group coordinator (DescribeGroups): every member's join
// metadata, with its advertised address (member.go), and the assignment
// the leader gave it. The answer is kept for one generation of this
// member's session, and for directoryMaxAge at most: tasks move only in
// a rebalance, which makes a new generation.
//
// It is safe for concurrent use.
type directory struct {
	group string

	mu         sync.Mutex
	generation int32 // of members; -1: nothing kept
	at         time.Time
	members    []groupMember
}

// directoryMaxAge bounds how long a directory keeps an answer within a
// generation: a static member that restarts with another address
// rejoins without a rebalance.
const directoryMaxAge = 30 * time.Second

// groupMember is one member of the group as DescribeGroups shows it.
type groupMember struct {
	memberID string
	instance string // "" without static membership
	addr     string // advertised address; "": none
	assigned map[string][]int32
}

// errRebalancing is the directory's answer while the group is between
// generations: the coordinator describes no assignment then.
type errRebalancing struct{ state string }

func (e errRebalancing) Error() string {
	return fmt.Sprintf("the group is rebalancing (state %s): no member holds the key's task until it settles", e.state)
}

// owner returns the member the group assigned partition p of topics (the
// source topics of a task) to, with ok false when none holds it; cl is
// the current session's client.
func (d *directory) owner(ctx context.Context, cl *kgo.Client, topics []string, p int32) (m groupMember, ok bool, err error) {
	members, err := d.load(ctx, cl)
	if err != nil {
		return groupMember{}, false, err
	}
	for _, m := range members {
		for _, t := range topics {
			if slices.Contains(m.assigned[t], p) {
				return m, true, nil
			}
		}
	}
	return groupMember{}, false, nil
}

// load returns the group's members, described again when the session's
// generation changed since they were, or they are too old.
func (d *directory) load(ctx context.Context, cl *kgo.Client) ([]groupMember, error) {
	_, generation := cl.GroupMetadata()
	d.mu.Lock()
	if d.members != nil && d.generation == generation && time.Since(d.at) < directoryMaxAge {
		defer d.mu.Unlock()
		return d.members, nil
	}
	d.mu.Unlock()
	groups, err := kadm.NewClient(cl).DescribeGroups(ctx, d.group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", d.group, err)
	}
	g, ok := groups[d.group]
	switch {
	case !ok:
		return nil, fmt.Errorf("describe group %s: not in the answer", d.group)
	case g.Err != nil:
		return nil, fmt.Errorf("describe group %s: %w", d.group, g.Err)
	case g.State != "Stable":
		return nil, errRebalancing{g.State}
	}
	members := make([]groupMember, 0, len(g.Members))
	for _, dm := range g.Members {
		m := groupMember{memberID: dm.MemberID, assigned: map[string][]int32{}}
		if dm.InstanceID != nil {
			m.instance = *dm.InstanceID
		}
		if meta, ok := dm.Join.AsConsumer(); ok {
			m.addr, _ = parseMemberData(meta.UserData)
		}
		if a, ok := dm.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				m.assigned[t.Topic] = append(m.assigned[t.Topic], t.Partitions...)
			}
		}
		members = append(members, m)
	}
	d.mu.Lock()
	d.generation, d.at, d.members = generation, time.Now(), members
	d.mu.Unlock()
	return members, nil
}

// forget drops what the directory keeps: the session that described the
// group ended.
func (d *directory) forget() {
	d.mu.Lock()
	d.members = nil
	d.mu.Unlock()
}

// describe names a member for messages: its instance id, else its member
// id.
func (m groupMember) describe() string {
	if m.instance != "" {
		return "instance " + m.instance
	}
	return "member " + m.memberID
}
