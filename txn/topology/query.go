package topology

import (
	"strconv"
	"time"
)

// Interactive queries: a worker answers, from outside the topology's
// processors, what one key holds in one of its stores. The topology says
// which stores can be asked and where a key's instance lives (Queryable);
// the runtime finds the task and asks it between batches, when the task
// holds only committed state (StoreReader).

// StoreKind is what a queryable store holds for a key.
type StoreKind int

const (
	// KeyValueStore holds one value per key.
	KeyValueStore StoreKind = iota + 1
	// WindowStore holds one value per key and time window.
	WindowStore
)

func (k StoreKind) String() string {
	switch k {
	case KeyValueStore:
		return "key-value"
	case WindowStore:
		return "window"
	}
	return "StoreKind(" + strconv.Itoa(int(k)) + ")"
}

// QueryableStore describes a store that answers interactive queries.
type QueryableStore struct {
	Name string
	Kind StoreKind
	// Subtopology is the sub-topology whose tasks hold the store's
	// instances. A key's instance is in the task of the partition that
	// Kafka's default partitioner (murmur2 of the serialized key) gives
	// it among the sub-topology's source partitions: where the topology
	// reads, or repartitions, the records the store is keyed by.
	Subtopology int
	// Key returns the serialized key (encoded by the store's key serde)
	// that text stands for: a key as a person writes it, in a URL. It
	// fails when the key serde cannot read text. It is safe for
	// concurrent use.
	Key func(text string) ([]byte, error)
}

// Queryable is a Topology whose stores can be queried from outside its
// processors.
type Queryable interface {
	// QueryableStores lists the stores that answer queries, sorted by
	// name.
	QueryableStores() []QueryableStore
}

// StoreReader is a Task that answers queries about its stores' keys.
// The runtime calls it between batches only, on the goroutine that
// processes the task, when the task holds no uncommitted writes: the
// answer is the state the task's last committed transaction left. An
// implementation refuses a call while writes are pending.
type StoreReader interface {
	// Get returns the value of key (serialized by the store's key
	// serde) in the key-value store called store, rendered as JSON, and
	// whether the key has one. It fails for a store the task does not
	// have or that is not a key-value store, and when the value cannot
	// be read or rendered.
	Get(store string, key []byte) (value []byte, found bool, err error)
	// Windows returns the windows of key in the window store called
	// store whose start is in [from, to), oldest first, with their
	// values rendered as JSON. It fails as Get.
	Windows(store string, key []byte, from, to time.Time) ([]WindowValue, error)
}

// WindowValue is one window of a key in a window store.
type WindowValue struct {
	Start, End time.Time
	Value      []byte // JSON
}
