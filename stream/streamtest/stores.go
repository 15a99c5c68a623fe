package streamtest

import (
	"github.com/sluicehq/sluice/stream"
)

// KeyValues returns the contents of store across all of the driver's
// tasks: what the topology has committed so far.
func KeyValues[K comparable, V any](d *Driver, store *stream.KeyValueStore[K, V]) (map[K]V, error) {
	out := map[K]V{}
	for _, t := range d.core.Tasks() {
		kv, ok := store.Of(t)
		if !ok {
			continue
		}
		it := kv.All()
		for it.Next() {
			out[it.Key()] = it.Value()
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
