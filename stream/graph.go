package stream

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The topology is kept twice, on purpose:
//
//   - node: the type-erased graph (names, kinds, edges, topics) that Build
//     validates and Describe prints;
//   - outlet/inlet: the typed wiring. Each operator's spec knows its input
//     and output types, and instantiates its runtime node for a task with a
//     typed reference to its children. Records then move between runtime
//     nodes as Record[K,V] values through direct interface calls: no boxing,
//     no reflection, no per-record allocation.

type nodeKind int

const (
	kindSource nodeKind = iota
	kindProcessor
	kindSink
)

func (k nodeKind) String() string {
	switch k {
	case kindSource:
		return "Source"
	case kindSink:
		return "Sink"
	}
	return "Processor"
}

type node struct {
	id       int
	name     string
	named    bool // the user chose the name
	kind     nodeKind
	op       string
	topics   []string // source: topics read; sink: topic written
	parents  []*node
	children []*node
	raw      rawSource // sources only
	// timestamp finds a source's records' event time (WithTimestamp);
	// nil: the Kafka timestamp.
	timestamp func(*kgo.Record) (time.Time, error)
	stores    []*storeSpec
	reads     []*storeSpec // stores of other nodes it reads (a join's table)
	sub       int          // sub-topology, set by Build
	rekeyed   bool         // records may have a key their partition was not chosen by
	internal  bool         // a repartition sink or source, created by the DSL
	// peers are nodes that must share this node's sub-topology without
	// records flowing between them: a join and the table it looks up.
	peers []*node
	// probe instantiates a Process node's processor on a probe task and
	// runs its Init, to find the stores it uses without declaring them
	// (see Builder.Build); nil for other nodes.
	probe func(t *task) error
	// processor is the Go type of a Process node's processor, for errors.
	processor string
}

// declares reports whether n declared s (WithStores, or the store of a
// stateful DSL operator).
func (n *node) declares(s *storeSpec) bool {
	for _, d := range n.stores {
		if d == s {
			return true
		}
	}
	return false
}

// keyChanging are the operators after which a stream's keys no longer
// match its partitions.
var keyChanging = map[string]bool{"map": true, "selectkey": true, "flatmap": true, "process": true}

// sink receives typed records: the input side of a runtime node.
type sink[K, V any] interface {
	push(r Record[K, V]) error
}

// inlet is the typed spec of an operator consuming Record[K,V].
type inlet[K, V any] interface {
	instantiate(t *task) (sink[K, V], error)
}

// outlet is the typed output of an operator: where its records go.
type outlet[K, V any] struct {
	node     *node
	children []inlet[K, V]
}

// build instantiates the outlet's children for task t.
func (o *outlet[K, V]) build(t *task) (sink[K, V], error) {
	switch len(o.children) {
	case 0:
		return discard[K, V]{}, nil
	case 1:
		return o.children[0].instantiate(t)
	}
	f := make(fanout[K, V], len(o.children))
	for i, c := range o.children {
		s, err := c.instantiate(t)
		if err != nil {
			return nil, err
		}
		f[i] = s
	}
	return f, nil
}

// memo instantiates the runtime node of n once per task: a node with
// several parents (Merge) is reached once per parent.
func memo[K, V any](t *task, n *node, mk func() (sink[K, V], error)) (sink[K, V], error) {
	if s, ok := t.instances[n]; ok {
		return s.(sink[K, V]), nil
	}
	s, err := mk()
	if err != nil {
		return nil, err
	}
	t.instances[n] = s
	return s, nil
}

type discard[K, V any] struct{}

func (discard[K, V]) push(Record[K, V]) error { return nil }

type fanout[K, V any] []sink[K, V]

func (f fanout[K, V]) push(r Record[K, V]) error {
	for _, s := range f {
		if err := s.push(r); err != nil {
			return err
		}
	}
	return nil
}

// opSpec is the spec of a one-input operator; mk builds its runtime node
// around the already-instantiated downstream sink.
type opSpec[KIn, VIn, KOut, VOut any] struct {
	out outlet[KOut, VOut]
	mk  func(t *task, next sink[KOut, VOut]) (sink[KIn, VIn], error)
}

func (s *opSpec[KIn, VIn, KOut, VOut]) instantiate(t *task) (sink[KIn, VIn], error) {
	return memo(t, s.out.node, func() (sink[KIn, VIn], error) {
		next, err := s.out.build(t)
		if err != nil {
			return nil, err
		}
		return s.mk(t, next)
	})
}
