package stream

import (
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
)

// Store is a state store declared on a Builder, to pass to the operators
// that use it with WithStores.
type Store interface {
	spec() *storeSpec
}

type storeSpec struct {
	name  string
	users []*node
	// sourceTopic, for a FromTable store, is the topic that is also its
	// changelog; no changelog of its own is created or written.
	sourceTopic string
	// open creates the store's handle in a task's database.
	open func(t *task) (any, error)
	// query answers interactive queries; nil: the store answers none.
	query *storeQuery
}

// changelogTopic is `<app-id>-<store>-changelog`, or the source topic of a
// FromTable store.
func (s *storeSpec) changelogTopic(appID string) string {
	if s.sourceTopic != "" {
		return s.sourceTopic
	}
	return topology.ChangelogTopic(appID, s.name)
}

// KeyValueStore is a declared key-value store: a typed handle that
// processors resolve, per task, with In.
//
//	counts := stream.NewKeyValueStore(b, "counts", serde.String, serde.Int64)
//	orders.Process(func() *counter { return &counter{counts: counts} },
//		stream.Named("count"), stream.WithStores(counts))
//
//	func (c *counter) Process(ctx stream.ProcessorContext, rec stream.Record[string, Order], out stream.Emitter[string, int64]) error {
//		kv := c.counts.In(ctx)
//		n, _, err := kv.Get(rec.Key())
//		...
//		return kv.Put(rec.Key(), n+1)
//	}
//
// Each task has its own instance of the store, holding the keys of its
// partition, in the task's local Pebble database, changelogged to the
// compacted topic `<app-id>-<name>-changelog` inside the same transaction as
// the task's outputs.
type KeyValueStore[K, V any] struct {
	s *storeSpec
}

// NewKeyValueStore declares a key-value store. The name must be unique and
// stable: the changelog topic and the on-disk layout derive from it. Keys
// are ordered by their encoded bytes (see state.KeyValue).
func NewKeyValueStore[K, V any](b *Builder, name string, keySerde serde.Serde[K], valueSerde serde.Serde[V]) *KeyValueStore[K, V] {
	s := &storeSpec{name: name, query: keyValueQuery[K, V](keySerde)}
	s.open = func(t *task) (any, error) {
		var log state.Changelog // none when the source topic is the changelog
		if s.sourceTopic == "" {
			log = t.newChangelogWriter(s.changelogTopic(b.appID))
		}
		return state.NewKeyValue(t.db, name, s.changelogTopic(b.appID), log, keySerde, valueSerde)
	}
	switch {
	case keySerde == nil || valueSerde == nil:
		b.errorf("store %q has no %s serde: pass one to NewKeyValueStore", name, whichNil(keySerde == nil, valueSerde == nil))
	case !validTopic.MatchString(name) || len(name) > 200:
		b.errorf("store name %q: use 1 to 200 of [a-zA-Z0-9._-] (it names the changelog topic)", name)
	}
	b.stores = append(b.stores, s)
	return &KeyValueStore[K, V]{s: s}
}

func (s *KeyValueStore[K, V]) spec() *storeSpec { return s.s }

// In returns the store's instance in the task that ctx belongs to. It is
// valid as long as the task; resolve it in Init or in each Process call.
// Using a store the Process node did not declare with WithStores is a
// programming error: resolved in Init, Build reports it; resolved in
// Process, it stops the call (In does not return) and fails the task with
// an *UndeclaredStoreError.
func (s *KeyValueStore[K, V]) In(ctx ProcessorContext) *state.KeyValue[K, V] {
	if !ctx.node.declares(s.s) {
		ctx.t.undeclaredStore(ctx.node, s.s)
	}
	return ctx.t.stores[s.s].(*state.KeyValue[K, V])
}

// WithStores declares the stores the processors of a Process operator use
// (it is a ProcessOption: no other operator takes it). The operator
// becomes stateful: it must be Named, and all operators sharing a store
// must be in one sub-topology.
func WithStores(stores ...Store) ProcessOption {
	return storesOption(stores)
}

// storesOption is what WithStores returns.
type storesOption []Store

func (s storesOption) applyNode(o *nodeOpts) { o.stores = append(o.stores, s...) }
func (storesOption) processOption()          {}

// Of returns the store's instance in t, a task made by Topology.NewTask:
// for test drivers and tools that inspect state from outside a processor.
func (s *KeyValueStore[K, V]) Of(t topology.Task) (*state.KeyValue[K, V], bool) {
	st, ok := t.(statefulTask)
	if !ok {
		return nil, false
	}
	h, ok := st.stores[s.s]
	if !ok {
		return nil, false
	}
	return h.(*state.KeyValue[K, V]), true
}
