package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/txn/topology"
	"github.com/sluicehq/sluice/window"
)

// Interactive queries (topology.Queryable, topology.StoreReader): the
// key-value stores (NewKeyValueStore, tables, grouped aggregations,
// table-table joins) and the window stores of tumbling and hopping
// windowed aggregations answer them. The stores of sliding and session
// windows, stream-stream joins and dedup do not: their layout is the
// operator's own business.

// storeQuery is how a queryable store answers: the store's own serdes,
// behind functions that take and give bytes.
type storeQuery struct {
	kind topology.StoreKind
	// key turns a key's text into its serialized form.
	key func(text string) ([]byte, error)
	// get and windows read the store's handle in one task (its open
	// result).
	get     func(h any, key []byte) ([]byte, bool, error)
	windows func(h any, key []byte, from, to time.Time) ([]topology.WindowValue, error)
}

// keyFromText returns the function that reads a key's text with ks: by
// its TextParser when it has one, else by decoding the text's bytes.
// The key is then encoded again, so that what comes out is what the
// store and the partitioner see.
func keyFromText[K any](ks serde.Serde[K]) func(string) ([]byte, error) {
	return func(text string) ([]byte, error) {
		var k K
		var err error
		if p, ok := ks.(serde.TextParser[K]); ok {
			k, err = p.ParseText(text)
		} else {
			k, err = ks.Decode([]byte(text))
		}
		if err != nil {
			return nil, err
		}
		return ks.Encode(k)
	}
}

// renderJSON renders a store's value for a query. A value that
// encoding/json cannot render (a channel, a function) is an error.
func renderJSON[V any](v V) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("stream: render the value as JSON: %w", err)
	}
	return b, nil
}

// keyValueQuery is the storeQuery of a state.KeyValue store.
func keyValueQuery[K, V any](ks serde.Serde[K]) *storeQuery {
	return &storeQuery{
		kind: topology.KeyValueStore,
		key:  keyFromText(ks),
		get: func(h any, key []byte) ([]byte, bool, error) {
			kv := h.(*state.KeyValue[K, V])
			k, err := ks.Decode(key)
			if err != nil {
				return nil, false, err
			}
			v, found, err := kv.Get(k)
			if err != nil || !found {
				return nil, false, err
			}
			b, err := renderJSON(v)
			return b, err == nil, err
		},
	}
}

// windowQuery is the storeQuery of a window store (newWindowStore): a
// key's windows are contiguous, in order of their start, and a range
// from (key, start from) to (key, start to) holds those whose start is
// in [from, to), and maybe other keys whose encoding starts with the
// key's (windowKeyCodec is not prefix-free), which are skipped.
func windowQuery[K, A any](ks serde.Serde[K]) *storeQuery {
	return &storeQuery{
		kind: topology.WindowStore,
		key:  keyFromText(ks),
		windows: func(h any, key []byte, from, to time.Time) ([]topology.WindowValue, error) {
			s := h.(*state.Expiring[window.Keyed[K], A])
			k, err := ks.Decode(key)
			if err != nil {
				return nil, err
			}
			// A window ends after it starts: (from, from) sorts before
			// every window that starts at from, (to, to) after every
			// window that starts before to.
			lo := window.Keyed[K]{Key: k, Window: window.Window{Start: from, End: from}}
			hi := window.Keyed[K]{Key: k, Window: window.Window{Start: to, End: to}}
			it := s.Range(&lo, &hi)
			var out []topology.WindowValue
			for it.Next() {
				kb, err := ks.Encode(it.Key().Key)
				if err != nil {
					it.Close()
					return nil, err
				}
				if !bytes.Equal(kb, key) {
					continue
				}
				v, err := renderJSON(it.Value())
				if err != nil {
					it.Close()
					return nil, err
				}
				w := it.Key().Window
				out = append(out, topology.WindowValue{Start: w.Start, End: w.End, Value: v})
			}
			return out, it.Close()
		},
	}
}

var _ topology.Queryable = (*Topology)(nil)

// QueryableStores implements topology.Queryable.
func (t *Topology) QueryableStores() []topology.QueryableStore {
	var qs []topology.QueryableStore
	for sub, stores := range t.subStores {
		for _, s := range stores {
			if s.query != nil {
				qs = append(qs, topology.QueryableStore{Name: s.name, Kind: s.query.kind, Subtopology: sub, Key: s.query.key})
			}
		}
	}
	slices.SortFunc(qs, func(a, b topology.QueryableStore) int { return strings.Compare(a.Name, b.Name) })
	return qs
}

var _ topology.StoreReader = statefulTask{}

// Get implements topology.StoreReader.
func (t statefulTask) Get(store string, key []byte) ([]byte, bool, error) {
	s, h, err := t.queried(store, topology.KeyValueStore)
	if err != nil {
		return nil, false, err
	}
	v, found, err := s.query.get(h, key)
	if err != nil {
		return nil, false, fmt.Errorf("stream: task %d_%d: query of store %s: %w", t.id.Subtopology, t.id.Partition, store, err)
	}
	return v, found, nil
}

// Windows implements topology.StoreReader.
func (t statefulTask) Windows(store string, key []byte, from, to time.Time) ([]topology.WindowValue, error) {
	s, h, err := t.queried(store, topology.WindowStore)
	if err != nil {
		return nil, err
	}
	ws, err := s.query.windows(h, key, from, to)
	if err != nil {
		return nil, fmt.Errorf("stream: task %d_%d: query of store %s: %w", t.id.Subtopology, t.id.Partition, store, err)
	}
	return ws, nil
}

// queried returns the queryable store called name, of kind, and its
// handle in the task, which must hold no uncommitted writes.
func (t statefulTask) queried(name string, kind topology.StoreKind) (*storeSpec, any, error) {
	if t.closed {
		return nil, nil, errTaskClosed
	}
	if n := t.db.Pending(); n > 0 {
		return nil, nil, fmt.Errorf("stream: task %d_%d: query of store %s while the task holds %d uncommitted writes: a query reads committed state, between batches", t.id.Subtopology, t.id.Partition, name, n)
	}
	for s, h := range t.stores {
		if s.name != name {
			continue
		}
		if s.query == nil || s.query.kind != kind {
			return nil, nil, fmt.Errorf("stream: task %d_%d: store %s is not a queryable %s store", t.id.Subtopology, t.id.Partition, name, kind)
		}
		return s, h, nil
	}
	return nil, nil, fmt.Errorf("stream: task %d_%d has no store %s", t.id.Subtopology, t.id.Partition, name)
}
