package stream

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topology is a validated, immutable topology, ready to be run by the
// runtime (txn) or the test driver (streamtest). It is safe for concurrent
// use; each task gets its own operator instances.
type Topology struct {
	appID     string
	policy    ErrorPolicy
	nodes     []*node
	subs      []topology.Subtopology
	subSrcs   [][]*node      // sources of each sub-topology
	subStores [][]*storeSpec // stores of each sub-topology
	globals   []*globalSpec
	topicOf   map[string]int
}

var _ topology.Topology = (*Topology)(nil)

var validAppID = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// Build validates the topology and returns it. The error lists every
// problem found, each saying what to fix. The Builder must not be used
// after Build.
func (b *Builder) Build() (*Topology, error) {
	errs := slices.Clone(b.errs)
	if !validAppID.MatchString(b.appID) {
		errs = append(errs, fmt.Errorf("stream: app id %q must be non-empty and use only [a-zA-Z0-9._-]: it prefixes topic names", b.appID))
	}
	if b.policy < OnErrorDLQ || b.policy > OnErrorFail {
		errs = append(errs, fmt.Errorf("stream: unknown error policy %v", b.policy))
	}
	names := map[string]*node{}
	readers := map[string]*node{}
	for _, n := range b.nodes {
		if prev, ok := names[n.name]; ok {
			errs = append(errs, fmt.Errorf("stream: name %q is used by two operators (%s and %s): give one another name with stream.Named", n.name, prev.op, n.op))
		}
		names[n.name] = n
		if n.kind != kindSource {
			continue
		}
		for _, topic := range n.topics {
			if prev, ok := readers[topic]; ok {
				errs = append(errs, fmt.Errorf("stream: topic %q is read by two sources (%s and %s): read it once and reuse the Stream", topic, prev.name, n.name))
			}
			readers[topic] = n
		}
	}
	t := &Topology{appID: b.appID, policy: b.policy, nodes: b.nodes, topicOf: map[string]int{}, globals: b.globals}
	for _, g := range b.globals {
		if n, ok := readers[g.topic]; ok {
			errs = append(errs, fmt.Errorf("stream: topic %q is both a global table and read by %s: read it once", g.topic, n.name))
		}
	}
	t.assignSubtopologies()
	for topic, n := range readers {
		t.topicOf[topic] = n.sub
	}
	if len(t.subs) == 0 {
		errs = append(errs, errNoSources)
	}
	for _, it := range t.InternalTopics() {
		if n, ok := readers[it.Name]; ok && !n.internal {
			errs = append(errs, fmt.Errorf("stream: source %s reads the app's own %s topic %q: failing records would loop through it forever; read it with another app id", n.name, it.Purpose, it.Name))
		}
	}
	if err := t.checkCycles(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, t.assignStores(b.stores)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, n := range b.nodes {
		if n.probe != nil {
			errs = append(errs, t.probe(n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// probe runs the probe of Process node n on a task of n's sub-topology
// that has only n's declared stores, in memory, and sees no records. It
// returns an error only for a store the processor's Init uses without
// declaring it; any other failure of the probe is left to the real tasks.
func (t *Topology) probe(n *node) error {
	tk := &task{topo: t, id: topology.TaskID{Subtopology: n.sub}, clock: func() time.Time { return time.Time{} }}
	if err := tk.openState(n.stores); err != nil {
		return nil
	}
	defer tk.Close()
	err := n.probe(tk)
	if u, ok := errors.AsType[*UndeclaredStoreError](err); ok {
		return fmt.Errorf("stream: %w: add stream.WithStores(...) to its Process", u)
	}
	return nil
}

// assignSubtopologies numbers the connected components of the graph in the
// order of their first source: sub-topology ids are stable for a given
// topology definition.
func (t *Topology) assignSubtopologies() {
	seen := map[*node]bool{}
	for _, root := range t.nodes {
		if root.kind != kindSource || seen[root] {
			continue
		}
		id := len(t.subs)
		var srcs []*node
		stack := []*node{root}
		seen[root] = true
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			n.sub = id
			if n.kind == kindSource {
				srcs = append(srcs, n)
			}
			for _, m := range slices.Concat(n.parents, n.children, n.peers) {
				if !seen[m] {
					seen[m] = true
					stack = append(stack, m)
				}
			}
		}
		slices.SortFunc(srcs, func(a, b *node) int { return a.id - b.id })
		var topics []string
		for _, s := range srcs {
			topics = append(topics, s.topics...)
		}
		t.subs = append(t.subs, topology.Subtopology{ID: id, SourceTopics: topics})
		t.subSrcs = append(t.subSrcs, srcs)
	}
}

// assignStores checks the stores and their users, and files each store
// under the sub-topology of its users.
func (t *Topology) assignStores(stores []*storeSpec) []error {
	var errs []error
	t.subStores = make([][]*storeSpec, len(t.subs))
	seen := map[string]bool{}
	for _, n := range t.nodes {
		// A table source's store is named after its topic, which is stable.
		if len(n.stores) > 0 && !n.named && n.kind != kindSource {
			errs = append(errs, fmt.Errorf("stream: operator %s uses stores %s but has no name: give it a stable one with stream.Named (state and changelogs are tied to names, never to positions)", n.name, storeNames(n.stores)))
		}
	}
	for _, s := range stores {
		if seen[s.name] {
			errs = append(errs, fmt.Errorf("stream: two stores are named %q: store names must be unique", s.name))
			continue
		}
		seen[s.name] = true
		if len(s.users) == 0 {
			errs = append(errs, fmt.Errorf("stream: store %q is used by no operator: pass it with stream.WithStores to the operators that use it", s.name))
			continue
		}
		sub := s.users[0].sub
		for _, u := range s.users[1:] {
			if u.sub != sub {
				errs = append(errs, fmt.Errorf("stream: store %q is used by %s (sub-topology %d) and %s (sub-topology %d): a store belongs to one sub-topology; connect them (Merge) or use two stores",
					s.name, s.users[0].name, sub, u.name, u.sub))
			}
		}
		if sub >= 0 && sub < len(t.subStores) {
			t.subStores[sub] = append(t.subStores[sub], s)
		}
	}
	return errs
}

func storeNames(ss []*storeSpec) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// checkCycles rejects a sub-topology that feeds itself through topics it
// writes and reads: every record would be processed again, forever.
func (t *Topology) checkCycles() error {
	writes := make([]map[int]string, len(t.subs)) // sub -> downstream sub -> via topic
	for _, n := range t.nodes {
		if n.kind != kindSink {
			continue
		}
		for _, topic := range n.topics {
			if to, ok := t.topicOf[topic]; ok {
				if writes[n.sub] == nil {
					writes[n.sub] = map[int]string{}
				}
				writes[n.sub][to] = topic
			}
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := make([]int, len(t.subs))
	var path []string
	var visit func(s int) error
	visit = func(s int) error {
		state[s] = onPath
		for _, to := range sortedKeys(writes[s]) {
			topic := writes[s][to]
			path = append(path, fmt.Sprintf("sub-topology %d writes %q, read by sub-topology %d", s, topic, to))
			switch state[to] {
			case onPath:
				return fmt.Errorf("stream: cycle through topics: %s: records would be processed forever; write to a topic the topology does not read", strings.Join(path, "; "))
			case unvisited:
				if err := visit(to); err != nil {
					return err
				}
			}
			path = path[:len(path)-1]
		}
		state[s] = done
		return nil
	}
	for s := range t.subs {
		if state[s] == unvisited {
			if err := visit(s); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AppID implements topology.Topology.
func (t *Topology) AppID() string { return t.appID }

// ErrorPolicy returns the topology's error policy.
func (t *Topology) ErrorPolicy() ErrorPolicy { return t.policy }

// Subtopologies implements topology.Topology.
func (t *Topology) Subtopologies() []topology.Subtopology {
	subs := slices.Clone(t.subs)
	for i := range subs {
		subs[i].SourceTopics = slices.Clone(subs[i].SourceTopics)
	}
	return subs
}

// SubtopologyOf returns the sub-topology that reads topic.
func (t *Topology) SubtopologyOf(topic string) (int, bool) {
	id, ok := t.topicOf[topic]
	return id, ok
}

// SinkTopics returns the topics the topology writes to, sorted, excluding
// internal topics.
func (t *Topology) SinkTopics() []string {
	var topics []string
	for _, n := range t.nodes {
		if n.kind == kindSink && !n.internal {
			topics = append(topics, n.topics...)
		}
	}
	slices.Sort(topics)
	return slices.Compact(topics)
}

func (t *Topology) dlqTopic() string { return topology.DLQTopic(t.appID) }

// InternalTopics implements topology.Topology: the DLQ under OnErrorDLQ, and
// one compacted changelog per store.
func (t *Topology) InternalTopics() []topology.InternalTopic {
	var its []topology.InternalTopic
	if t.policy == OnErrorDLQ {
		its = append(its, topology.InternalTopic{Name: t.dlqTopic(), Purpose: "dlq", Subtopology: -1})
	}
	for _, n := range t.nodes {
		if n.internal && n.kind == kindSink {
			its = append(its, topology.InternalTopic{Name: n.topics[0], Purpose: "repartition", Subtopology: n.sub})
		}
	}
	for sub, stores := range t.subStores {
		for _, s := range stores {
			if s.sourceTopic != "" {
				continue
			}
			its = append(its, topology.InternalTopic{Name: s.changelogTopic(t.appID), Purpose: "changelog", Subtopology: sub,
				Configs: map[string]string{"cleanup.policy": "compact"}})
		}
	}
	return its
}

// NewTask implements topology.Topology: it instantiates the operators of
// sub-topology id.Subtopology for partition id.Partition, calling each
// processor's Init.
func (t *Topology) NewTask(id topology.TaskID, cfg topology.TaskConfig) (topology.Task, error) {
	if id.Subtopology < 0 || id.Subtopology >= len(t.subs) {
		return nil, fmt.Errorf("stream: no sub-topology %d (topology has %d)", id.Subtopology, len(t.subs))
	}
	tk := &task{topo: t, id: id, cfg: cfg, clock: cfg.Clock, sources: map[string]rawSink{}, instances: map[*node]any{}}
	if tk.clock == nil {
		tk.clock = time.Now
	}
	if err := tk.openState(t.subStores[id.Subtopology]); err != nil {
		return nil, err
	}
	for _, src := range t.subSrcs[id.Subtopology] {
		s, err := src.raw.instantiateRaw(tk)
		if err != nil {
			return nil, errors.Join(err, tk.Close())
		}
		for _, topic := range src.topics {
			tk.sources[topic] = s
			if src.timestamp != nil {
				if tk.timestamps == nil {
					tk.timestamps = map[string]func(*kgo.Record) (time.Time, error){}
				}
				tk.timestamps[topic] = src.timestamp
			}
		}
	}
	tk.instances = nil
	tk.Settle(true) // the schedules made by Init belong to no batch
	if tk.db != nil {
		return statefulTask{tk}, nil
	}
	return tk, nil
}
