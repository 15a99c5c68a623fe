package stream

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GlobalTable is a table of which every worker holds all partitions: a
// stream joins it on any key it computes, with no co-partitioning. The
// runtime restores it before processing starts and keeps it current from
// its topic in the background, so a join sees the table as of roughly the
// time the record is processed (as in Kafka Streams, this is not part of
// the exactly-once replay: a replayed record may see a newer value).
type GlobalTable[K, V any] struct {
	g  *globalSpec
	ks serde.Serde[K]
	vs serde.Serde[V]
}

type globalSpec struct {
	name   string
	topic  string
	prefix []byte
}

// FromGlobalTable reads topic as a global table: each record upserts its
// key, a null value deletes it. The store is named after the topic, or the
// operator's stream.Named name. The topic should be compacted.
func FromGlobalTable[K, V any](b *Builder, topic string, keySerde serde.Serde[K], valueSerde serde.Serde[V], opts ...Option) GlobalTable[K, V] {
	var o nodeOpts
	for _, opt := range opts {
		opt.applyNode(&o)
	}
	name := o.name
	if name == "" {
		name = topic
	}
	g := &globalSpec{name: name, topic: topic, prefix: state.StorePrefix(name)}
	n := &node{name: "global-" + name}
	b.checkTopic(n, topic)
	if keySerde == nil || valueSerde == nil {
		b.errorf("global table %q has no %s serde: pass one to FromGlobalTable", name, whichNil(keySerde == nil, valueSerde == nil))
	}
	b.globals = append(b.globals, g)
	return GlobalTable[K, V]{g: g, ks: keySerde, vs: valueSerde}
}

// JoinGlobal emits joiner(key, value, tableValue) for each record of s
// whose table key, key(k, v), is in the global table; others are dropped.
func (s Stream[K, V]) JoinGlobal[KT, VT, VR any](table GlobalTable[KT, VT], key func(K, V) KT, joiner func(key K, value V, tableValue VT) VR, opts ...Option) Stream[K, VR] {
	if joiner == nil || key == nil {
		s.b.errorf("JoinGlobal: key and joiner must not be nil")
	}
	return joinGlobal(s, table, key, "joinglobal", func(k K, v V, tv VT, found bool) (VR, bool) {
		if !found {
			var zero VR
			return zero, false
		}
		return joiner(k, v, tv), true
	}, nodeOptions(opts))
}

// LeftJoinGlobal emits joiner(key, value, tableValue, found) for every
// record of s; found is false when key(k, v) is not in the global table.
func (s Stream[K, V]) LeftJoinGlobal[KT, VT, VR any](table GlobalTable[KT, VT], key func(K, V) KT, joiner func(key K, value V, tableValue VT, found bool) VR, opts ...Option) Stream[K, VR] {
	if joiner == nil || key == nil {
		s.b.errorf("LeftJoinGlobal: key and joiner must not be nil")
	}
	return joinGlobal(s, table, key, "leftjoinglobal", func(k K, v V, tv VT, found bool) (VR, bool) {
		return joiner(k, v, tv, found), true
	}, nodeOptions(opts))
}

func joinGlobal[K, V, KT, VT, VR any](s Stream[K, V], table GlobalTable[KT, VT], key func(K, V) KT, op string, joiner func(K, V, VT, bool) (VR, bool), opts []nodeOption) Stream[K, VR] {
	return then(s, op, opts, func(t *task, next sink[K, VR]) (sink[K, V], error) {
		gs, ok := t.cfg.Global.(*globalState)
		if !ok {
			return nil, fmt.Errorf("stream: %s: the runtime gave the task no global table state", op)
		}
		var buf []byte
		return sinkFunc[K, V](func(r Record[K, V]) error {
			kb, err := table.ks.Encode(key(r.key, r.value))
			if err != nil {
				return fmt.Errorf("global table %q: encode key: %w", table.g.name, err)
			}
			buf = append(append(buf[:0], table.g.prefix...), kb...)
			raw, found, err := gs.db.GetApplied(buf)
			if err != nil {
				return err
			}
			var tv VT
			if found {
				if tv, err = table.vs.Decode(raw); err != nil {
					return fmt.Errorf("global table %q: decode value: %w", table.g.name, err)
				}
			}
			vr, emit := joiner(r.key, r.value, tv, found)
			if !emit {
				return nil
			}
			return next.push(Record[K, VR]{key: r.key, value: vr, ts: r.ts, headers: r.headers, origin: r.origin})
		}), nil
	})
}

// globalState is one worker's copy of every global table, in one Pebble
// database: the runtime applies records from one goroutine, tasks read
// what was flushed.
type globalState struct {
	db      *state.DB
	byTopic map[string]*globalSpec
	mu      sync.Mutex // Apply and Flush
	offsets map[string]int64
}

var _ topology.Global = (*globalState)(nil)

// NewGlobal implements topology.Topology.
func (t *Topology) NewGlobal(stateDir string) (topology.Global, error) {
	if len(t.globals) == 0 {
		return nil, nil
	}
	opts := state.Options{}
	if stateDir == "" {
		opts.FS = vfs.NewMem()
	}
	dir := filepath.Join(stateDir, "global")
	db, err := state.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("stream: global tables: %w", err)
	}
	gs := &globalState{db: db, byTopic: map[string]*globalSpec{}, offsets: map[string]int64{}}
	for _, g := range t.globals {
		gs.byTopic[g.topic] = g
	}
	for k, v := range db.Checkpoint().Offsets {
		gs.offsets[k] = v
	}
	return gs, nil
}

// Topics implements topology.Global.
func (g *globalState) Topics() []string {
	topics := make([]string, 0, len(g.byTopic))
	for t := range g.byTopic {
		topics = append(topics, t)
	}
	return topics
}

// offsetKey names a topic partition in the checkpoint.
func offsetKey(topic string, p int32) string { return topic + "@" + strconv.Itoa(int(p)) }

// From implements topology.Global.
func (g *globalState) From() map[string]map[int32]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	from := map[string]map[int32]int64{}
	for k, off := range g.offsets {
		i := strings.LastIndexByte(k, '@')
		p, err := strconv.Atoi(k[i+1:])
		if i < 0 || err != nil {
			continue
		}
		topic := k[:i]
		if from[topic] == nil {
			from[topic] = map[int32]int64{}
		}
		from[topic][int32(p)] = off
	}
	return from
}

// Apply implements topology.Global.
func (g *globalState) Apply(rec *kgo.Record) error {
	spec, ok := g.byTopic[rec.Topic]
	if !ok {
		return fmt.Errorf("stream: %q is not a global table topic", rec.Topic)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.offsets[offsetKey(rec.Topic, rec.Partition)] = rec.Offset + 1
	if rec.Attrs.IsControl() {
		return nil
	}
	return g.db.ApplyRestored(spec.prefix, rec.Key, rec.Value)
}

// Flush implements topology.Global.
func (g *globalState) Flush() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cp := state.Checkpoint{Offsets: make(map[string]int64, len(g.offsets))}
	for k, v := range g.offsets {
		cp.Offsets[k] = v
	}
	return g.db.Commit(cp)
}

// Close implements topology.Global.
func (g *globalState) Close() error { return g.db.Close() }
